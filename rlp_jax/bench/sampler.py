"""`rlp_jax.sampling.generate` vs transformers `generate`: same prompts, lengths and settings.

Both run in this process on the same CPU threads (torch uses `os.cpu_count()` threads; XLA
uses every core). Prompts are random token ids without padding, and no row stops early
(our `eos_id=-1`; transformers gets `min_new_tokens = max_new_tokens`), so both produce
exactly `batch × new_tokens` tokens. Our compile time is measured apart and excluded.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from rlp_jax import progress
from rlp_jax.bench.common import median_time, timed_compile
from rlp_jax.model.config import ModelConfig
from rlp_jax.rollout.sampling import generate

MODES = (("greedy", 0.0), ("temperature 0.7", 0.7))


def _ours(params, cfg: ModelConfig, prompt, temperature: float, new_tokens: int, repeats: int, bar):
    valid = jnp.ones_like(prompt, bool)
    jitted = jax.jit(lambda p, x, key: generate(p, cfg, x, valid, key, new_tokens, temperature, 0, 1.0, -1))
    key = jax.random.key(0)
    bar.set_postfix_str("compiling rlp_jax generate")
    compiled, compile_s = timed_compile(jitted, params, prompt, key)
    bar.set_postfix_str("timing rlp_jax generate")
    seconds = median_time(lambda: compiled(params, prompt, key), repeats)
    tokens, _ = compiled(params, prompt, key)
    return np.asarray(tokens), seconds, compile_s


def _transformers_model(name: str):
    import torch
    import transformers

    from rlp_jax.convert.fetch import locate_gguf

    directory, filename = os.path.split(locate_gguf(name))
    return transformers.AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename,
                                                             dtype=torch.float32).eval()


def _theirs(hf, prompt: np.ndarray, temperature: float, new_tokens: int, repeats: int):
    import torch

    ids = torch.tensor(prompt, dtype=torch.long)
    kwargs = dict(attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                  pad_token_id=0)
    if temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
    else:
        kwargs.update(do_sample=False)

    def call():
        with torch.no_grad():
            return hf.generate(ids, **kwargs)

    seconds = median_time(call, repeats)
    return call()[:, prompt.shape[1]:].numpy(), seconds


def run(params, cfg: ModelConfig, model_name: str, batch: int, prompt_len: int, new_tokens: int,
        repeats: int = 3, log=print) -> dict:
    from rlp_jax.errors import UserError

    if min(batch, prompt_len, new_tokens) < 1:
        raise UserError("bench: sampler batch, prompt length and new tokens must be >= 1")
    if prompt_len + new_tokens > cfg.max_seq_len:
        raise UserError(f"bench: prompt {prompt_len} + {new_tokens} new tokens exceeds the model's "
                        f"context {cfg.max_seq_len}")
    hf = None
    threads = None
    if model_name == "smollm2-135m":
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        threads = torch.get_num_threads()
        hf = _transformers_model(model_name)
    prompt = np.random.default_rng(0).integers(0, cfg.vocab_size, (batch, prompt_len)).astype(np.int32)
    rows = []
    bar = progress.bar(desc="bench sampler", total=len(MODES), unit="mode")
    for mode, temperature in MODES:
        ours_tokens, ours_s, compile_s = _ours(params, cfg, jnp.asarray(prompt), temperature, new_tokens, repeats,
                                               bar)
        n = batch * new_tokens
        row = {"mode": mode, "temperature": temperature, "batch": batch, "prompt_len": prompt_len,
               "new_tokens": new_tokens, "ours_s": ours_s, "ours_tokens_per_s": n / ours_s,
               "ours_compile_s": compile_s, "transformers_s": None, "transformers_tokens_per_s": None,
               "ratio": None, "greedy_token_agreement": None, "torch_threads": threads}
        if hf is not None:
            bar.set_postfix_str("timing transformers generate")
            their_tokens, their_s = _theirs(hf, prompt, temperature, new_tokens, repeats)
            row.update(transformers_s=their_s, transformers_tokens_per_s=n / their_s, ratio=their_s / ours_s)
            if temperature == 0:
                row["greedy_token_agreement"] = float(np.mean(their_tokens == ours_tokens))
        rows.append(row)
        bar.update()
        peer = ("no transformers peer for this model" if hf is None else
                f"transformers {row['transformers_tokens_per_s']:.1f} tok/s, ratio {row['ratio']:.2f}x")
        log(f"sampler {mode}: B={batch} prompt={prompt_len} new={new_tokens}: rlp_jax "
            f"{row['ours_tokens_per_s']:.1f} tok/s (compile {compile_s:.1f} s), {peer}")
    bar.close()
    return {"rows": rows}
