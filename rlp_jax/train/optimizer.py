"""The optimizer every objective shares: AdamW under a warmup + decay schedule, after
global-norm clipping. One config, one constructor, so RLP, RPT and the next-token
baseline are compared with everything else held equal."""

from __future__ import annotations

import dataclasses
from typing import Any

import optax

from rlp_jax.errors import need

SCHEDULES = ("constant", "cosine", "linear")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """AdamW with an optional warmup + decay schedule and global-norm clipping."""

    learning_rate: float = 1e-6  # RLP paper default (constant)
    schedule: str = "constant"
    warmup_steps: int = 0
    decay_steps: int = 0  # total steps of the cosine/linear decay (after warmup)
    end_lr_fraction: float = 0.0
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # global norm; 0 disables

    def __post_init__(self):
        p = "optimizer"
        need(self.learning_rate > 0, f"{p}.learning_rate must be > 0, got {self.learning_rate}")
        need(self.schedule in SCHEDULES, f"{p}.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        need(self.warmup_steps >= 0, f"{p}.warmup_steps must be >= 0, got {self.warmup_steps}")
        need(self.schedule == "constant" or self.decay_steps > 0,
             f"{p}.decay_steps must be > 0 for schedule {self.schedule!r}")
        need(0.0 <= self.end_lr_fraction <= 1.0, f"{p}.end_lr_fraction must be in [0, 1]")
        need(0 <= self.b1 < 1 and 0 <= self.b2 < 1, f"{p}.b1 and {p}.b2 must be in [0, 1)")
        need(self.weight_decay >= 0, f"{p}.weight_decay must be >= 0")
        need(self.grad_clip >= 0, f"{p}.grad_clip must be >= 0 (0 disables), got {self.grad_clip}")

    def replace(self, **changes: Any) -> "OptimizerConfig":
        return dataclasses.replace(self, **changes)


def learning_rate_schedule(ocfg: OptimizerConfig):
    """Linear warmup, then constant / cosine / linear decay to end_lr_fraction·lr."""
    lr, end = ocfg.learning_rate, ocfg.learning_rate * ocfg.end_lr_fraction
    if ocfg.schedule == "cosine":
        decay = optax.cosine_decay_schedule(lr, ocfg.decay_steps, ocfg.end_lr_fraction)
    elif ocfg.schedule == "linear":
        decay = optax.linear_schedule(lr, end, ocfg.decay_steps)
    else:
        decay = optax.constant_schedule(lr)
    if not ocfg.warmup_steps:
        return decay
    warmup = optax.linear_schedule(0.0, lr, ocfg.warmup_steps)
    return optax.join_schedules([warmup, decay], [ocfg.warmup_steps])


def make_optimizer(ocfg: OptimizerConfig) -> optax.GradientTransformation:
    """AdamW under the schedule, after global-norm clipping (if grad_clip > 0)."""
    adamw = optax.adamw(learning_rate_schedule(ocfg), b1=ocfg.b1, b2=ocfg.b2, eps=ocfg.eps,
                        weight_decay=ocfg.weight_decay)
    return optax.chain(optax.clip_by_global_norm(ocfg.grad_clip), adamw) if ocfg.grad_clip else adamw
