"""Typed, validated hyper-parameters of the RLP objective (DESIGN §2.1) and its optimizer.

Both dataclasses are frozen and hashable so the compiled `rlp_step` can take them as
static arguments. Every field a user can get wrong is checked here, once, with a
one-line `UserError` that names the field, instead of failing deep inside a trace.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rlp_jax.errors import UserError

ADVANTAGES = ("rlp", "grpo")
POSITION_STRATEGIES = ("uniform", "entropy")
SCHEDULES = ("constant", "cosine", "linear")


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise UserError(message)


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """AdamW with an optional warmup + decay schedule and global-norm clipping."""

    learning_rate: float = 1e-6  # paper default (constant)
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
        _need(self.learning_rate > 0, f"{p}.learning_rate must be > 0, got {self.learning_rate}")
        _need(self.schedule in SCHEDULES, f"{p}.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        _need(self.warmup_steps >= 0, f"{p}.warmup_steps must be >= 0, got {self.warmup_steps}")
        _need(self.schedule == "constant" or self.decay_steps > 0,
              f"{p}.decay_steps must be > 0 for schedule {self.schedule!r}")
        _need(0.0 <= self.end_lr_fraction <= 1.0, f"{p}.end_lr_fraction must be in [0, 1]")
        _need(0 <= self.b1 < 1 and 0 <= self.b2 < 1, f"{p}.b1 and {p}.b2 must be in [0, 1)")
        _need(self.weight_decay >= 0, f"{p}.weight_decay must be >= 0")
        _need(self.grad_clip >= 0, f"{p}.grad_clip must be >= 0 (0 disables), got {self.grad_clip}")

    def replace(self, **changes: Any) -> "OptimizerConfig":
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class RLPConfig:
    """Everything `rlp_step` needs besides the model: rollout, reward, loss, EMA, batching.

    Markers: `open_ids` / `close_ids` are token ids; `open_text` / `close_text` are
    alternatives turned into ids by `with_markers(tokenizer)`. A thought is
    `open_ids, c_1..c_n, close_ids` with n ≤ thought_len; sampling `close_ids[0]` ends it
    early and the full close marker is then teacher-forced before scoring x_t.
    """

    group_size: int = 16  # G thoughts per position
    positions_per_window: int = 8  # K
    thought_len: int = 64  # L, max sampled thought tokens
    temperature: float = 0.7
    top_k: int = 0
    top_p: float = 1.0
    open_ids: tuple[int, ...] = ()
    close_ids: tuple[int, ...] = ()
    open_text: str = "<think>"
    close_text: str = "</think>"
    eps_low: float = 0.2
    eps_high: float = 0.2
    ntp_coef: float = 0.0
    kl_beta: float = 0.0  # KL to the EMA teacher (the only reference model in the state)
    advantage: str = "rlp"
    position_strategy: str = "uniform"
    min_context: int = 16
    ema_decay: float = 0.999
    updates_per_rollout: int = 1
    minibatches: int = 1  # split over the K positions (whole groups stay together)

    def __post_init__(self):
        p = "rlp"
        _need(isinstance(self.group_size, int) and self.group_size >= 2,
              f"{p}.group_size must be >= 2 (advantages compare thoughts), got {self.group_size!r}")
        for name in ("positions_per_window", "thought_len", "min_context", "updates_per_rollout",
                     "minibatches"):
            value = getattr(self, name)
            _need(isinstance(value, int) and value >= 1, f"{p}.{name} must be an integer >= 1, got {value!r}")
        _need(self.temperature > 0, f"{p}.temperature must be > 0 for RL rollouts, got {self.temperature}")
        _need(self.top_k >= 0, f"{p}.top_k must be >= 0 (0 disables), got {self.top_k}")
        _need(0 < self.top_p <= 1, f"{p}.top_p must be in (0, 1], got {self.top_p}")
        _need(0 <= self.eps_low < 1, f"{p}.eps_low must be in [0, 1), got {self.eps_low}")
        _need(self.eps_high >= 0, f"{p}.eps_high must be >= 0, got {self.eps_high}")
        _need(self.ntp_coef >= 0 and self.kl_beta >= 0, f"{p}.ntp_coef and {p}.kl_beta must be >= 0")
        _need(self.advantage in ADVANTAGES,
              f"{p}.advantage: unknown objective {self.advantage!r} (choose one of {ADVANTAGES})")
        _need(self.position_strategy in POSITION_STRATEGIES,
              f"{p}.position_strategy: unknown strategy {self.position_strategy!r} "
              f"(choose one of {POSITION_STRATEGIES})")
        _need(0 <= self.ema_decay < 1, f"{p}.ema_decay must be in [0, 1), got {self.ema_decay}")
        _need(self.positions_per_window % self.minibatches == 0,
              f"{p}.minibatches ({self.minibatches}) must divide positions_per_window "
              f"({self.positions_per_window})")
        for name in ("open_ids", "close_ids"):
            ids = getattr(self, name)
            _need(isinstance(ids, tuple) and all(isinstance(i, int) and i >= 0 for i in ids),
                  f"{p}.{name} must be a tuple of non-negative token ids, got {ids!r}")

    def replace(self, **changes: Any) -> "RLPConfig":
        return dataclasses.replace(self, **changes)

    @property
    def branches(self) -> int:
        """Branches per window, R = K·G."""
        return self.positions_per_window * self.group_size

    @property
    def branch_len(self) -> int:
        """Teacher-forced branch length: open marker, L thought slots, close marker."""
        return len(self.open_ids) + self.thought_len + len(self.close_ids)

    def with_markers(self, tokenizer) -> "RLPConfig":
        """Fill `open_ids`/`close_ids` from the text markers (ids already set are kept)."""
        def ids(text: str, current: tuple[int, ...]) -> tuple[int, ...]:
            if current:
                return current
            single = tokenizer.token_to_id(text)
            return (int(single),) if single is not None else tuple(int(i) for i in tokenizer.encode(text))
        return self.replace(open_ids=ids(self.open_text, self.open_ids),
                            close_ids=ids(self.close_text, self.close_ids))

    def check(self, window_len: int, vocab_size: int, max_seq_len: int | None = None) -> None:
        """Checks that need the data and model: markers set and in vocab, K and L fit."""
        p = "rlp"
        _need(len(self.open_ids) >= 1 and len(self.close_ids) >= 1,
              f"{p}.open_ids and {p}.close_ids must be set (call with_markers(tokenizer) or give ids)")
        bad = [i for i in self.open_ids + self.close_ids if i >= vocab_size]
        _need(not bad, f"{p}: marker ids {bad} are outside the model vocabulary ({vocab_size})")
        choices = window_len - self.min_context
        _need(choices >= self.positions_per_window,
              f"{p}.positions_per_window ({self.positions_per_window}) exceeds the {max(choices, 0)} "
              f"positions a window of {window_len} tokens offers after min_context={self.min_context}")
        longest = window_len - 1 + self.branch_len + 1
        if max_seq_len is not None:
            _need(longest <= max_seq_len,
                  f"{p}.thought_len ({self.thought_len}) is impossible: window {window_len} + markers "
                  f"+ thought needs {longest} positions but the model allows {max_seq_len}")


@dataclasses.dataclass(frozen=True)
class RPTConfig:
    """RPT-specific settings; rollout sizes (G, K, L, temperature) come from `RLPConfig`."""

    entropy_threshold: float = 0.5  # keep positions whose proxy top-16 entropy exceeds this
    answer_open: str = ""  # answer tags; empty = the last \boxed{...}
    answer_close: str = ""
    context_tokens: int = 16  # context decoded before the continuation (keeps its leading space)
    continuation_tokens: int = 8  # longest multi-token prediction that can be rewarded

    def __post_init__(self):
        _need(bool(self.answer_open) == bool(self.answer_close),
              "rpt.answer_open and rpt.answer_close must be set together")
        _need(self.context_tokens >= 1 and self.continuation_tokens >= 1,
              "rpt.context_tokens and rpt.continuation_tokens must be >= 1")

    @property
    def tags(self):
        return (self.answer_open, self.answer_close) if self.answer_open else None
