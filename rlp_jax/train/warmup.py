"""The next-token warm-up before RLP or RPT, and the before/after summary of a run.

A random-init model has nothing to think with: RLP's claim is that a model which can
already read and write text gains from thinking. `warmup.steps > 0` first trains plain
next-token prediction on `warmup.data` (a corpus where some documents carry worked
reasoning, as web text does) as its own run in `RUN_DIR/warmup` — its own checkpoints,
metrics and exact resume, by the same loop — and the objective then starts from its final
weights, with a fresh optimizer and the EMA teacher φ ← θ at its first step. Nothing of the
warm-up corpus reaches the objective's phase but the weights.
"""

from __future__ import annotations

import dataclasses
import os

from rlp_jax.train.config import TrainConfig
from rlp_jax.train.optimizer import OptimizerConfig

WARMUP_DIR = "warmup"


def warmup_dir(cfg: TrainConfig) -> str:
    return os.path.join(cfg.run.run_dir, WARMUP_DIR)


def warmup_config(cfg: TrainConfig) -> TrainConfig:
    """The warm-up run of a resolved `cfg`: next-token steps on `warmup.data` with the same
    model, tokenizer and window, in `RUN_DIR/warmup`."""
    w, run = cfg.warmup, cfg.run
    data = dataclasses.replace(cfg.data, data=w.data or cfg.data.data, batch_size=w.batch_size or cfg.data.batch_size,
                               seq_len=w.seq_len or cfg.data.seq_len)
    optimizer = OptimizerConfig(learning_rate=w.learning_rate, schedule="cosine", decay_steps=w.steps,
                                end_lr_fraction=0.1, grad_clip=cfg.optimizer.grad_clip)
    every = max(1, w.steps // 4)
    run = dataclasses.replace(run, run_dir=warmup_dir(cfg), checkpoint_dir="", steps=w.steps, objective="ntp",
                              checkpoint_every=every, eval_every=w.steps, eval_at_start=False,
                              log_every=max(1, min(run.log_every, every)))
    return cfg.replace(data=data, optimizer=optimizer, run=run, warmup=dataclasses.replace(w, steps=0))


def run_if_needed(cfg: TrainConfig, train, say) -> None:
    """Run (or finish) the warm-up with `train`, unless the run already has checkpoints of
    its own (then the warm-up's weights live on in them). Preempted during the warm-up: it
    saved, and the same command resumes it."""
    from rlp_jax.train import checkpoint

    if not cfg.warmup.steps or checkpoint.has_checkpoints(cfg.run.checkpoint_dir or
                                                          os.path.join(cfg.run.run_dir, "checkpoints")):
        return
    say(f"warm-up: {cfg.warmup.steps} next-token steps in {warmup_dir(cfg)}, then {cfg.run.objective}")
    if train(warmup_config(cfg))["status"] != "finished":
        raise SystemExit(0)


def summary_lines(run_dir: str, objective: str) -> list[str]:
    """Held-out figures at the run's first and last evals (from metrics.jsonl): what the
    objective changed. Thinking accuracy is compared with no-think accuracy at the same
    positions, overall and on the hard bucket."""
    from rlp_jax.train.metrics import read_metrics

    records = read_metrics(run_dir)
    evals = [r for r in records if any(k.startswith("eval/") for k in r)]
    if len(evals) < 2:
        return []
    first, last = evals[0], evals[-1]
    rows = [("held-out NLL (no think)", "eval/nll")]
    if objective == "rlp":
        rows += [("information gain (nats)", "eval/info_gain"),
                 ("thinking accuracy, all", "eval/acc_think/all"),
                 ("no-think accuracy there", "eval/acc_no_think_at_thoughts/all"),
                 ("thinking accuracy, hard", "eval/acc_think/hard"),
                 ("no-think accuracy there", "eval/acc_no_think_at_thoughts/hard")]
    lines = [f"held-out, step {first['step']} -> step {last['step']}:"]
    for label, key in rows:
        if key in first and key in last:
            lines.append(f"  {label:<26} {first[key]:8.3f} -> {last[key]:8.3f}")
    if objective == "rpt" and (reward := reward_before_after(records)):
        span, first, last = reward
        lines.append(f"prefix-match reward, first {span} -> last {span} steps: {first:.3f} -> {last:.3f}")
    return lines if len(lines) > 1 else []


def reward_before_after(records, span: int = 10):
    """`(span, first, last)`: the mean training reward over the first and last `span` steps
    (fewer if the run is short), or None. RPT's reward is its prefix-match accuracy, and each
    step's windows are fresh, its completions sampled before it updates on them."""
    rewards = [r["train/reward_mean"] for r in records if "train/reward_mean" in r]
    span = min(span, len(rewards) // 2)
    if not span:
        return None
    return span, sum(rewards[:span]) / span, sum(rewards[-span:]) / span
