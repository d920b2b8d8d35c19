"""Exact resume and preemption with real subprocesses on the real data path (arithmetic
corpus, auto tokenizer, shuffled Grain pipeline): SIGKILL after a checkpoint, then SIGTERM,
then finishing, gives params, EMA and optimizer state bitwise equal to one uninterrupted run."""

import os
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from rlp_jax.train import checkpoint
from rlp_jax.train import config
from train_helpers import REPO, TINY, env, metrics, run_train, train_cmd

pytestmark = pytest.mark.slow  # several training subprocesses

REAL = [a for a in TINY if not a.startswith(("data.data", "rollout.open_ids", "rollout.close_ids", "model.vocab_size"))] + [
    "data.data=builtin:arithmetic", "data.tokenizer=auto", "prepare.builtin_docs=200", "model.vocab_size=352",
    "run.steps=8", "run.checkpoint_every=2", "run.eval_every=3", "run.eval_batches=1"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def _wait_for(predicate, proc, timeout=240):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended early: {proc.communicate()[0][-2000:]}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("timed out")


def _steps(run_dir):
    d = os.path.join(run_dir, "checkpoints")
    return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def _state(run_dir, step):
    from rlp_jax.model import sharding
    from rlp_jax.model import transformer as model
    from rlp_jax.train.state import init_state, state_shardings

    cfg = config.from_dict(config.read_yaml(os.path.join(run_dir, "config.yaml")))
    like = jax.eval_shape(lambda k: init_state(model.init_params(cfg.model, k), cfg.optimizer, k),
                          jax.random.key(0))
    shard = state_shardings(like, cfg.model, sharding.make_mesh(sharding.MeshConfig()))
    manager = checkpoint.make_manager(os.path.join(run_dir, "checkpoints"), read_only=True)
    state, _ = checkpoint.restore(manager, like, shard, step=step)
    return state


def test_kill_then_preempt_then_resume_is_bitwise_exact(tmp_path, cache):
    straight = str(tmp_path / "straight")
    done = run_train(REAL + [f"run.run_dir={straight}"], cache=cache)
    assert done.returncode == 0, done.stderr[-2000:]

    broken = str(tmp_path / "broken")
    slow = REAL + [f"run.run_dir={broken}", "run.sleep_per_step=0.4"]
    # 1. SIGKILL right after the first checkpoint is complete.
    proc = subprocess.Popen(train_cmd(*slow), env=env(1, cache), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: _steps(broken), proc)
    proc.kill()
    proc.communicate()
    killed_at = _steps(broken)[-1]
    assert killed_at < 8

    # 2. Resume, then SIGTERM mid-run: a checkpoint at the current step, exit code 0.
    proc = subprocess.Popen(train_cmd(*slow), env=env(1, cache), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: os.path.exists(os.path.join(broken, "metrics.jsonl"))
              and metrics(broken)[-1]["step"] >= killed_at + 1, proc)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode in (0, 143), out[-2000:]
    assert f"resumed from checkpoint step {killed_at}" in out
    preempted_at = metrics(broken)[-1]["step"]
    assert preempted_at < 8, "finished before SIGTERM arrived"
    assert f"saved checkpoint step {preempted_at}" in out and _steps(broken)[-1] == preempted_at

    # 3. The next start resumes from the preemption checkpoint and finishes.
    last = run_train(slow[:-1], cache=cache)
    assert last.returncode == 0, last.stderr[-2000:]
    assert f"resumed from checkpoint step {preempted_at}" in last.stdout

    a, b = _state(straight, 8), _state(broken, 8)
    assert int(a.step) == int(b.step) == 8
    for name in ("params", "ema_params", "opt_state"):
        la, lb = jax.tree.leaves(getattr(a, name)), jax.tree.leaves(getattr(b, name))
        assert len(la) == len(lb) > 3
        for x, y in zip(la, lb):
            assert np.array_equal(np.asarray(x), np.asarray(y)), name
    assert np.array_equal(jax.random.key_data(a.rng), jax.random.key_data(b.rng))
    # The metrics history is one consistent run: steps 1..8 once each, same numbers.
    ma, mb = metrics(straight), metrics(broken)
    assert [r["step"] for r in mb] == [r["step"] for r in ma]
    assert [r.get("train/reward_mean") for r in mb] == [r.get("train/reward_mean") for r in ma]
    assert any("eval/info_gain" in r for r in mb)
