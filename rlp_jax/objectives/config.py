"""Typed, validated loss settings of each objective (RLP, RPT); rollouts have their own
`RolloutConfig` and the optimizer its `OptimizerConfig`.

Frozen and hashable so compiled steps take them as static arguments. Kept free of JAX
imports so a config can be loaded and checked anywhere. Every field a user can get wrong
is checked once here, with a one-line `UserError` naming the key.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from rlp_jax.errors import need

ADVANTAGES = ("rlp", "grpo")


@dataclasses.dataclass(frozen=True)
class PolicyLossConfig:
    """The clipped policy-gradient update both RL objectives share (docs/algorithms.md)."""

    section: ClassVar[str] = "policy"
    eps_low: float = 0.2
    eps_high: float = 0.2
    kl_beta: float = 0.0  # KL to the reference policy (the EMA teacher)
    advantage: str = "rlp"
    updates_per_rollout: int = 1  # extra optimizer steps on one rollout (off-policy after the first)
    minibatches: int = 1  # optimizer steps per pass, each on a part of the K positions (groups stay whole)
    grad_accumulation: int = 1  # microbatches of the K positions whose gradients make ONE optimizer step

    def __post_init__(self):
        p = self.section
        need(0 <= self.eps_low < 1, f"{p}.eps_low must be in [0, 1), got {self.eps_low}")
        need(self.eps_high >= 0, f"{p}.eps_high must be >= 0, got {self.eps_high}")
        need(self.kl_beta >= 0, f"{p}.kl_beta must be >= 0, got {self.kl_beta}")
        need(self.advantage in ADVANTAGES,
             f"{p}.advantage: unknown estimator {self.advantage!r} (choose one of {ADVANTAGES})")
        for name in ("updates_per_rollout", "minibatches", "grad_accumulation"):
            value = getattr(self, name)
            need(isinstance(value, int) and value >= 1, f"{p}.{name} must be an integer >= 1, got {value!r}")

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)

    @property
    def single_update(self) -> bool:
        """One optimizer step per rollout (Algorithm 1): the update is on-policy."""
        return self.updates_per_rollout == 1 and self.minibatches == 1

    def check_split(self, positions_per_window: int) -> None:
        """Minibatches, then accumulation microbatches, split the K positions into equal parts."""
        parts = self.minibatches * self.grad_accumulation
        need(positions_per_window % parts == 0,
             f"{self.section}.minibatches × {self.section}.grad_accumulation ({self.minibatches} × "
             f"{self.grad_accumulation}) must divide rollout.positions_per_window ({positions_per_window})")


@dataclasses.dataclass(frozen=True)
class RLPConfig(PolicyLossConfig):
    """RLP's loss: the clipped surrogate on thought tokens, plus optional NTP after the thought."""

    section: ClassVar[str] = "rlp"
    ntp_coef: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        need(self.ntp_coef >= 0, f"rlp.ntp_coef must be >= 0, got {self.ntp_coef}")


@dataclasses.dataclass(frozen=True)
class RPTConfig(PolicyLossConfig):
    """RPT: GRPO advantages, proxy-entropy filtering and the prefix-match reward's settings."""

    section: ClassVar[str] = "rpt"
    advantage: str = "grpo"
    entropy_threshold: float = 0.5  # keep positions whose proxy top-16 entropy exceeds this
    answer_open: str = ""  # answer tags; empty = the last \boxed{...}
    answer_close: str = ""
    context_tokens: int = 16  # context decoded before the continuation (keeps its leading space)
    continuation_tokens: int = 8  # longest multi-token prediction that can be rewarded

    def __post_init__(self):
        super().__post_init__()
        need(bool(self.answer_open) == bool(self.answer_close),
             "rpt.answer_open and rpt.answer_close must be set together")
        need(self.context_tokens >= 1 and self.continuation_tokens >= 1,
             "rpt.context_tokens and rpt.continuation_tokens must be >= 1")

    @property
    def tags(self):
        return (self.answer_open, self.answer_close) if self.answer_open else None
