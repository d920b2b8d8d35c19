"""Metrics fetched one step late (train/loop.py): the log holds the same records in the same
order as a fetch after every step, and `run.nonfinite=stop` still never saves the bad step
when no checkpoint is due at it."""

import os

import pytest

from rlp_jax.errors import UserError
from rlp_jax.train import config
from rlp_jax.train import loop as train
from train_helpers import TINY, metrics


def _steps(run_dir):
    return sorted(int(n) for n in os.listdir(os.path.join(run_dir, "checkpoints")) if n.isdigit())


def test_records_keep_their_steps_keys_and_order(tmp_path):
    args = TINY + [f"run.run_dir={tmp_path}", "run.steps=5", "run.checkpoint_every=4", "run.eval_every=2",
                   "run.eval_batches=1", "run.keep=5"]
    summary = train.train(config.load_config(None, args))
    rows = metrics(tmp_path)
    kinds = [(r["step"], "eval" if any(k.startswith("eval/") for k in r) else "train") for r in rows]
    assert kinds == [(1, "train"), (2, "eval"), (2, "train"), (3, "train"), (4, "eval"), (4, "train"),
                     (5, "train")]
    train_keys = {k for k in rows[0] if k != "step"}
    assert all({k for k in r if k != "step"} == train_keys for r in rows if not any(k.startswith("eval/") for k in r))
    assert {"train/loss", "train/nonfinite", "train/diverged", "train/update_ratio", "train/skipped_total",
            "train/tokens_per_s"} <= train_keys
    # checkpoint_every=4: steps 4 and 5 (the last), not also step 1 (Orbax's default policy would)
    assert _steps(tmp_path) == [4, 5] and summary["step"] == 5 and summary["status"] == "finished"


def test_stop_between_checkpoints_raises_for_the_bad_step_and_saves_nothing(tmp_path):
    good = TINY + [f"run.run_dir={tmp_path}", "run.nonfinite=stop"]
    train.train(config.load_config(None, good + ["run.steps=2", "run.checkpoint_every=1"]))
    bad = good + ["optimizer.learning_rate=.inf", "run.steps=5", "run.checkpoint_every=100"]
    with pytest.raises(UserError, match=r"non-finite loss or gradient at step 3 .*last good checkpoint is step 2$"):
        train.train(config.load_config(None, bad))  # step 3 is seen after step 4 is dispatched
    assert _steps(tmp_path) == [1, 2]
    assert [r["step"] for r in metrics(tmp_path)] == [1, 2]
