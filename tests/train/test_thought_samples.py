"""Thoughts made visible: `thoughts.jsonl` at every held-out eval of an RLP run (a resume
appends, past a half-written last line), and `rlp-jax eval --think --show N`."""

import json
import math

import jax
import numpy as np
import pytest

from rlp_jax.cli import main as cli_main
from rlp_jax.errors import UserError
from rlp_jax.model import transformer as model
from rlp_jax.model.config import ModelConfig
from rlp_jax.rollout.config import RolloutConfig
from rlp_jax.train import config as config_lib
from rlp_jax.train.thought_samples import THOUGHTS_FILE, sample_thoughts_jit
from rlp_jax.train.thought_text import FIELDS, format_example, rows
from train_helpers import TINY, run_train

REAL = [a for a in TINY if not a.startswith(("data.data", "rollout.open_ids", "rollout.close_ids", "model.vocab_size"))] + [
    "data.data=builtin:arithmetic", "data.tokenizer=auto", "prepare.builtin_docs=200", "model.vocab_size=352",
    "run.steps=4", "run.checkpoint_every=2", "run.eval_every=2", "run.eval_batches=1", "run.show_thoughts=3"]
TYPES = {"step": int, "t": int, "context": str, "thought": str, "target": str, "prediction": str,
         "reward": float, "s_pred": float, "s_ema": float}


def _rows(run_dir):
    with open(run_dir / THOUGHTS_FILE) as f:
        return [json.loads(line) for line in f]  # every line parses


def _check(row):
    assert set(row) == set(FIELDS)
    for key, kind in TYPES.items():
        assert type(row[key]) is kind, (key, row[key])
    assert math.isclose(row["reward"], row["s_pred"] - row["s_ema"], abs_tol=1e-5)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("thoughts")
    done = run_train(REAL + [f"run.run_dir={root / 'run'}"], cache=str(root / "cache"))
    assert done.returncode == 0, done.stderr[-2000:]
    return root


def test_sample_thoughts_take_one_branch_per_group_first():
    cfg = ModelConfig(vocab_size=16, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=8, mlp_dim=32)
    rcfg = RolloutConfig(group_size=2, positions_per_window=2, thought_len=3, open_ids=(1,), close_ids=(2,),
                         min_context=3)
    params = model.init_params(cfg, jax.random.key(0))
    window = jax.random.randint(jax.random.key(1), (2, 10), 3, cfg.vocab_size)
    out = jax.device_get(sample_thoughts_jit(params, params, window, jax.random.key(2), cfg=cfg, rollout=rcfg,
                                             count=6))
    assert out["valid"].all() and out["thought"].shape == (6, 3)
    t = out["t"].tolist()  # the four groups (2 windows × 2 positions) first, then second branches
    assert t[0] < t[1] and t[2] < t[3] and t[4:] == t[:2]
    np.testing.assert_allclose(out["reward"], out["s_pred"] - out["s_ema"], atol=1e-6)
    np.testing.assert_array_equal(out["target"], np.asarray(window)[[0, 0, 1, 1, 0, 0], out["t"]])
    shown = rows(out, None, 7)
    assert len(shown) == 6 and shown[0]["step"] == 7 and shown[0]["thought"].startswith("[")
    assert "reward" in format_example(shown[0]) and "prediction:" in format_example(shown[0])


def test_show_thoughts_must_not_be_negative():
    with pytest.raises(UserError, match="run.show_thoughts must be >= 0"):
        config_lib.load_config(None, ["run.show_thoughts=-1"])


@pytest.mark.slow  # a training subprocess
def test_training_writes_thoughts_at_every_eval(run):
    rows_ = _rows(run / "run")
    assert [r["step"] for r in rows_] == [2, 2, 2, 4, 4, 4]
    for row in rows_:
        _check(row)
    assert all(row["context"] and row["thought"] for row in rows_)  # decoded text, not ids
    assert not rows_[0]["thought"].startswith("[")
    assert list((run / "run" / "tb").iterdir())


@pytest.mark.slow  # a training subprocess
def test_a_resumed_run_appends_past_a_half_written_line(run):
    path = run / "run" / THOUGHTS_FILE
    with open(path, "a") as f:
        f.write('{"step": 6, "t": 3, "cont')  # a kill mid-write
    longer = [a for a in REAL if not a.startswith("run.steps=")] + ["run.steps=6", f"run.run_dir={run / 'run'}"]
    done = run_train(longer, cache=str(run / "cache"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resumed from checkpoint step 4" in done.stdout
    rows_ = _rows(run / "run")
    assert [r["step"] for r in rows_] == [2, 2, 2, 4, 4, 4, 6, 6, 6]
    for row in rows_:
        _check(row)


@pytest.mark.slow  # a training subprocess
def test_eval_show_prints_examples(run, tmp_path, capsys):
    """A run is evaluated with its own window, thought length and markers unless told otherwise."""
    rc = cli_main(["eval", "--checkpoint", str(run / "run"), "--think", "--show", "3", "--min-context", "5",
                   "--batch-size", "2", "--batches", "1", "--positions", "2", "--group-size", "2",
                   "--out", str(tmp_path / "e")])
    out = capsys.readouterr().out
    assert rc == 0
    shown = out.split("sample thoughts (3 of the first batch):")[1]
    assert shown.count("] reward ") == 3 and shown.count("  thought:    ") == 3
    assert shown.count("  prediction: ") == 3 and "S_no_think" in shown
    settings = json.loads((tmp_path / "e" / "eval.json").read_text())["settings"]
    run_cfg = config_lib.load_config(str(run / "run" / "config.yaml"), [])
    assert (settings["seq_len"], settings["thought_len"], settings["temperature"]) == (
        run_cfg.data.seq_len, run_cfg.rollout.thought_len, run_cfg.rollout.temperature) == (16, 4, 1.0)
    assert settings["min_context"] == 5  # given on the command line: it wins over the run's 4


@pytest.mark.slow  # a training subprocess
def test_eval_min_context_must_leave_positions(run, tmp_path, capfd):
    rc = cli_main(["eval", "--checkpoint", str(run / "run"), "--think", "--min-context", "16",
                   "--out", str(tmp_path / "e")])
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and lines[-1] == "rlp-jax: error: --min-context must be in [1, --seq-len) = [1, 16), got 16"


def test_show_without_think_is_one_line(tmp_path, capfd):
    rc = cli_main(["eval", "--checkpoint", str(tmp_path), "--text-file", "x", "--show", "3"])
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("rlp-jax: error: --show"), lines
