"""In-process driver runs: the non-finite guard (skip and count / stop without saving) and
the next-token baseline objective."""

import math
import os

import jax
import numpy as np
import pytest

from rlp_jax.train import checkpoint
from rlp_jax.train import config
from rlp_jax.train import loop as train
from rlp_jax.errors import UserError
from train_helpers import TINY, metrics

# An infinite learning rate makes every updated parameter inf/NaN.
BAD_LR = ["optimizer.learning_rate=.inf"]


def _finite(tree) -> bool:
    return all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(tree))


def test_skip_keeps_the_last_finite_state_and_counts(tmp_path):
    args = TINY + BAD_LR + [f"run.run_dir={tmp_path}", "run.steps=3", "run.nonfinite=skip"]
    summary = train.train(config.load_config(None, args))
    rows = metrics(tmp_path)
    assert [r["train/nonfinite"] for r in rows] == [1, 1, 1] and summary["skipped"] == 3
    assert rows[-1]["train/skipped_total"] == 3
    _, params = checkpoint.restore_params(str(tmp_path))
    _, ema = checkpoint.restore_params(str(tmp_path), which="ema_params")
    assert _finite(params) and _finite(ema)


def test_stop_raises_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    good = TINY + [f"run.run_dir={tmp_path}", "run.checkpoint_every=1", "run.nonfinite=stop"]
    train.train(config.load_config(None, good + ["run.steps=2"]))
    _, before = checkpoint.restore_params(str(tmp_path))
    with pytest.raises(UserError, match=r"non-finite loss or gradient at step 3 .*last good checkpoint is step 2$"):
        train.train(config.load_config(None, good + BAD_LR + ["run.steps=4"]))  # resumes at 2, fails at 3
    assert sorted(int(n) for n in os.listdir(tmp_path / "checkpoints") if n.isdigit())[-1] == 2
    _, after = checkpoint.restore_params(str(tmp_path))
    assert _finite(after)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))


def test_next_token_baseline_learns_the_unigram(tmp_path):
    args = TINY + [f"run.run_dir={tmp_path}", "run.objective=ntp", "optimizer.learning_rate=1e-2",
                   "run.steps=30", "run.checkpoint_every=30", "run.eval_every=30"]
    summary = train.train(config.load_config(None, args))
    rows = [r for r in metrics(tmp_path) if "train/loss" in r]
    first, last = rows[0]["train/loss"], rows[-1]["train/loss"]
    assert first > math.log(28) + 0.05  # random init, roughly log(32)
    assert last < first - 0.05  # moving to uniform over the 28 synthetic tokens
    assert "info_gain" not in summary["last_eval"] and summary["last_eval"]["nll"] > 0
