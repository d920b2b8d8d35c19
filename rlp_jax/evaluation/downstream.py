"""Downstream tasks from local JSONL files (hubs are unreachable; users bring the files).

Multiple choice (MMLU style), one object per line:
    {"question": "...", "choices": ["...", "..."], "answer": 1}
each choice is scored by log p(" " + choice | prompt); the highest wins (optionally
length-normalised per token).

Generation (GSM8K style), one object per line:
    {"question": "...", "answer": "42"}         (GSM8K's "... #### 42" is accepted too)
the model continues the prompt greedily (optionally after "<think>", i.e. thinking
first); the prediction is the last \\boxed{...} if present, else the first line after any
"</think>"; exact match after trimming spaces and a trailing period.

The prompt is `question + "\\nAnswer:"` by default (`prompt_suffix`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rlp_jax import progress
from rlp_jax.model import transformer as model_lib
from rlp_jax.errors import UserError, jsonl_records, need_file
from rlp_jax.objectives.prefix_match import extract_answer
from rlp_jax.rollout.sampling import generate


def read_task(path: str, kind: str) -> list[dict]:
    """Read and validate a task file; `kind` is "mc" or "gen"."""
    need_file(path, "task file")
    items = []
    for number, item in jsonl_records(path):
        if not isinstance(item, dict) or not isinstance(item.get("question"), str):
            raise UserError(f"{path}:{number}: needs a string 'question'")
        if kind == "mc":
            choices, answer = item.get("choices"), item.get("answer")
            if not (isinstance(choices, list) and len(choices) >= 2 and all(isinstance(c, str) for c in choices)):
                raise UserError(f"{path}:{number}: 'choices' must be a list of at least 2 strings")
            # JSON true/false are Python ints: "answer": true would silently mean choice 1.
            if not (isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(choices)):
                raise UserError(f"{path}:{number}: 'answer' must be the index of the right choice "
                                f"(0 to {len(choices) - 1}), got {answer!r}")
        elif isinstance(item.get("answer"), bool) or not isinstance(item.get("answer"), (str, int, float)):
            raise UserError(f"{path}:{number}: needs an 'answer' (a string or a number)")
        items.append(item)
    if not items:
        raise UserError(f"{path} holds no questions")
    return items


def _prompt_ids(tokenizer, text: str) -> list[int]:
    ids = tokenizer.encode(text)
    return [tokenizer.bos_id] + ids if tokenizer.add_bos else ids


def choice_logprobs(params, cfg, tokenizer, prompt: str, choices: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(sum of log-probs, token count) of each `" " + choice` after `prompt`."""
    prompt_ids = _prompt_ids(tokenizer, prompt)
    full = [tokenizer.encode(prompt + " " + c) for c in choices]
    full = [[tokenizer.bos_id] + ids if tokenizer.add_bos else ids for ids in full]
    # The shared prompt prefix; tokens after it are the choice (merges across the seam stay honest).
    starts = [min(len(prompt_ids), next((i for i, (a, b) in enumerate(zip(ids, prompt_ids)) if a != b), len(ids)))
              for ids in full]
    length = max(len(ids) for ids in full)
    if length > cfg.max_seq_len:
        raise UserError(f"a question + choice has {length} tokens, more than the model's context {cfg.max_seq_len}")
    tokens = np.zeros((len(full), length), np.int32)
    for i, ids in enumerate(full):
        tokens[i, : len(ids)] = ids
    logits = model_lib.forward_compiled(params, cfg, jnp.asarray(tokens))
    logp = np.asarray(jax.nn.log_softmax(logits[:, :-1], axis=-1))
    target_lp = np.take_along_axis(logp, tokens[:, 1:, None], -1)[..., 0]
    sums, counts = np.zeros(len(full)), np.zeros(len(full))
    for i, ids in enumerate(full):
        sums[i] = target_lp[i, starts[i] - 1 : len(ids) - 1].sum()
        counts[i] = len(ids) - starts[i]
    return sums, counts


def multiple_choice(params, cfg, tokenizer, items, normalize: bool = False, prompt_suffix="\nAnswer:") -> dict:
    correct = []
    for item in progress.bar(items, desc="downstream", unit="question"):
        sums, counts = choice_logprobs(params, cfg, tokenizer, item["question"] + prompt_suffix, item["choices"])
        scores = sums / np.maximum(counts, 1) if normalize else sums
        correct.append(int(np.argmax(scores)) == item["answer"])
    return {"accuracy": float(np.mean(correct)), "count": len(correct)}


def normalise_answer(text) -> str:
    text = str(text)
    if "####" in text:
        text = text.split("####")[-1]
    return text.strip().rstrip(".").strip().replace(",", "") if text.strip() else ""


def predicted_answer(completion: str) -> str:
    boxed = extract_answer(completion)
    if boxed is not None:
        return normalise_answer(boxed)
    if "</think>" in completion:
        completion = completion.split("</think>")[-1]
    lines = [line for line in completion.strip().splitlines() if line.strip()]
    return normalise_answer(lines[0] if lines else "")


def generation(params, cfg, tokenizer, items, max_new_tokens: int = 32, think: bool = False,
               prompt_suffix="\nAnswer:", batch_size: int = 8) -> dict:
    """Exact-match accuracy of greedy answers (after a thought when `think`)."""
    suffix = prompt_suffix + (" <think>" if think else "")
    eos = -1 if tokenizer.eos_id is None else tokenizer.eos_id
    records = []
    bar = progress.bar(desc="downstream", total=len(items), unit="question")
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        prompts = [_prompt_ids(tokenizer, item["question"] + suffix) for item in chunk]
        width = max(len(p) for p in prompts)
        if width + max_new_tokens > cfg.max_seq_len:
            raise UserError(f"a prompt of {width} tokens + {max_new_tokens} new tokens exceeds the context {cfg.max_seq_len}")
        tokens = np.zeros((len(prompts), width), np.int32)
        valid = np.zeros((len(prompts), width), bool)
        for i, p in enumerate(prompts):  # left-padded
            tokens[i, width - len(p):], valid[i, width - len(p):] = p, True
        out, lengths = generate(params, cfg, jnp.asarray(tokens), jnp.asarray(valid), jax.random.key(0),
                                max_new_tokens, 0.0, 0, 1.0, eos)
        for item, ids, n in zip(chunk, np.asarray(out), np.asarray(lengths)):
            ids = [int(t) for t in ids[:n] if int(t) != eos]
            completion = tokenizer.decode(ids)
            records.append({"question": item["question"], "completion": completion,
                            "prediction": predicted_answer(completion), "answer": normalise_answer(item["answer"])})
        bar.update(len(chunk))
    bar.close()
    correct = [r["prediction"] == r["answer"] for r in records]
    return {"exact_match": float(np.mean(correct)), "count": len(records), "examples": records[:5]}
