"""Shared pieces of the training-driver tests: a tiny synthetic-data config and a way to
run `rlp-jax train` in a fresh process (device count must be fixed before jax imports)."""

import json
import os
import socket
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = [
    "model.vocab_size=32", "model.d_model=32", "model.n_layers=1", "model.n_heads=2", "model.n_kv_heads=1",
    "model.head_dim=16", "model.mlp_dim=64", "model.max_seq_len=64",
    "data.data=synthetic", "data.seq_len=16", "data.batch_size=8",
    "rollout.group_size=2", "rollout.positions_per_window=2", "rollout.thought_len=4", "rollout.open_ids=[1]",
    "rollout.close_ids=[2]", "rollout.min_context=4", "rollout.temperature=1.0", "ema_decay=0.9",
    "optimizer.learning_rate=1e-3", "run.eval_every=0", "run.progress=false",
]


def env(devices: int = 1, cache: str | None = None, **extra) -> dict:
    e = dict(os.environ)
    e.pop("XLA_FLAGS", None)
    e.update(JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             PYTHONPATH=REPO + os.pathsep + e.get("PYTHONPATH", ""))
    if cache:
        e["RLP_JAX_CACHE"] = cache
    e.update(extra)
    return e


def train_cmd(*args) -> list:
    return [sys.executable, "-m", "rlp_jax", "train", *args]


def run_train(args, devices=1, cache=None, timeout=300, **extra):
    return subprocess.run(train_cmd(*args), env=env(devices, cache, **extra), capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(run_dir) -> list[dict]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]
