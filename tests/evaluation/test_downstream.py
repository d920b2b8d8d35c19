"""Downstream tasks: answer parsing, log-likelihood multiple choice, exact-match generation, errors."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from byte_bpe import tiny_byte_bpe

from rlp_jax.evaluation import downstream
from rlp_jax.model import transformer as model
from rlp_jax.cli import main as cli_main
from rlp_jax.model.config import ModelConfig
from rlp_jax.model.io import save_model

TOK = tiny_byte_bpe([" red", " blue", " green", "Answer"], specials=["<eos>"])
CFG = ModelConfig(vocab_size=TOK.vocab_size, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8,
                  mlp_dim=48, max_seq_len=128)
PARAMS = model.init_params(CFG, jax.random.key(0))


def test_answer_parsing():
    assert downstream.predicted_answer("<think>2+2</think> \\boxed{4}") == "4"
    assert downstream.predicted_answer(" 1,234.\nmore") == "1234"
    assert downstream.predicted_answer("work...</think>\n 7\n") == "7"
    assert downstream.normalise_answer("Natalia sold 72 clips.\n#### 72") == "72"


def test_choice_logprobs_equal_direct_scoring():
    prompt, choices = "Sky is\nAnswer:", ["blue", "red", "green grass"]
    sums, counts = downstream.choice_logprobs(PARAMS, CFG, TOK, prompt, choices)
    for choice, total, count in zip(choices, sums, counts):
        ids = TOK.encode(prompt + " " + choice)
        start = len(TOK.encode(prompt))
        logp = jax.nn.log_softmax(model.forward_compiled(PARAMS, CFG, jnp.asarray([ids]))[0, :-1])
        direct = sum(float(logp[i - 1, ids[i]]) for i in range(start, len(ids)))
        assert count == len(ids) - start
        assert abs(total - direct) < 1e-4


def test_multiple_choice_accuracy_follows_the_scores():
    questions = ["Sky is", "Grass is", "Blood is"]
    choices = ["blue", "red", "green"]
    best = [int(np.argmax(downstream.choice_logprobs(PARAMS, CFG, TOK, q + "\nAnswer:", choices)[0]))
            for q in questions]
    right = [{"question": q, "choices": choices, "answer": b} for q, b in zip(questions, best)]
    wrong = [{**item, "answer": (item["answer"] + 1) % 3} for item in right]
    assert downstream.multiple_choice(PARAMS, CFG, TOK, right) == {"accuracy": 1.0, "count": 3}
    assert downstream.multiple_choice(PARAMS, CFG, TOK, wrong)["accuracy"] == 0.0


def test_generation_exact_match_through_the_cli(tmp_path):
    save_model(str(tmp_path / "m"), CFG, PARAMS, TOK)
    items = [{"question": q, "answer": "placeholder"} for q in ("What colour?", "Which one?")]
    first = downstream.generation(PARAMS, CFG, TOK, items, max_new_tokens=6)
    assert first["count"] == 2 and first["exact_match"] == 0.0
    own = [{"question": e["question"], "answer": e["prediction"] or "x"} for e in first["examples"]]
    task = tmp_path / "gen.jsonl"
    task.write_text("\n".join(json.dumps(i) for i in own))
    out = tmp_path / "res.json"
    assert cli_main(["downstream", "--checkpoint", str(tmp_path / "m"), "--task", str(task), "--type", "gen",
                     "--max-new-tokens", "6", "--out", str(out)]) == 0
    expected = np.mean([bool(e["prediction"]) for e in first["examples"]])
    assert json.loads(out.read_text())["exact_match"] == expected


@pytest.mark.parametrize("line,message", [
    ("not json", "not JSON"),
    ('{"question": "q", "choices": ["a"], "answer": 0}', "at least 2"),
    ('{"question": "q", "choices": ["a", "b"], "answer": 5}', "index"),
    ('{"choices": ["a", "b"], "answer": 0}', "question"),
])
def test_bad_task_files_are_one_line_errors(tmp_path, line, message, capsys):
    task = tmp_path / "t.jsonl"
    task.write_text(line + "\n")
    assert cli_main(["downstream", "--checkpoint", str(tmp_path), "--task", str(task), "--type", "mc"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
