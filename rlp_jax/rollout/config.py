"""How thoughts are rolled out: G, K, L, sampling, markers and where to think.

Shared by every objective that samples (RLP's thoughts, RPT's completions) and by
evaluation; the loss settings live with each objective. Frozen and hashable so compiled
functions can take it as a static argument. Every check is written here once and raises
a one-line `UserError` naming the `rollout.` key.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rlp_jax.errors import need

POSITION_STRATEGIES = ("uniform", "entropy")
PAPER_THOUGHT_LEN = 2048  # RLP paper: thoughts up to 2048 tokens (Table S.1: 64 is its worst setting)
AUTO = -1  # thought_len: the paper's length, capped by the model's positions (`resolve_thought_len`)
SHORT_THOUGHT = 512  # below this a real model is warned (unless allow_short_thoughts)


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    """Markers: `open_ids` / `close_ids` are token ids; `open_text` / `close_text` are the
    alternatives turned into ids by `with_markers(tokenizer)`. A thought is
    `open_ids, c_1..c_n, close_ids` with 1 ≤ n ≤ thought_len; sampling `close_ids[0]` ends it
    early and the full close marker is then teacher-forced before x_t is scored.
    """

    group_size: int = 16  # G thoughts per position
    positions_per_window: int = 8  # K
    thought_len: int = 64  # L, max sampled thought tokens; -1: auto (training's default for real models)
    temperature: float = 0.7
    top_k: int = 0
    top_p: float = 1.0
    open_ids: tuple[int, ...] = ()
    close_ids: tuple[int, ...] = ()
    open_text: str = "<think>"
    close_text: str = "</think>"
    position_strategy: str = "uniform"
    min_context: int = 16
    allow_short_thoughts: bool = False  # no warning for L < 512 (tiny CPU configs and tests)

    def __post_init__(self):
        p = "rollout"
        need(isinstance(self.group_size, int) and self.group_size >= 2,
             f"{p}.group_size must be >= 2 (advantages compare thoughts), got {self.group_size!r}")
        for name in ("positions_per_window", "thought_len", "min_context"):
            value = getattr(self, name)
            auto = name == "thought_len" and value == AUTO
            need(isinstance(value, int) and (value >= 1 or auto),
                 f"{p}.{name} must be an integer >= 1" + (f" (or {AUTO}: auto)" if name == "thought_len" else "")
                 + f", got {value!r}")
        need(self.temperature > 0, f"{p}.temperature must be > 0 for RL rollouts, got {self.temperature}")
        need(self.top_k >= 0, f"{p}.top_k must be >= 0 (0 disables), got {self.top_k}")
        need(0 < self.top_p <= 1, f"{p}.top_p must be in (0, 1], got {self.top_p}")
        need(self.position_strategy in POSITION_STRATEGIES,
             f"{p}.position_strategy: unknown strategy {self.position_strategy!r} "
             f"(choose one of {POSITION_STRATEGIES})")
        for name in ("open_ids", "close_ids"):
            ids = getattr(self, name)
            need(isinstance(ids, tuple) and all(isinstance(i, int) and i >= 0 for i in ids),
                 f"{p}.{name} must be a tuple of non-negative token ids, got {ids!r}")

    def replace(self, **changes: Any) -> "RolloutConfig":
        return dataclasses.replace(self, **changes)

    @property
    def branches(self) -> int:
        """Branches per window, R = K·G."""
        return self.positions_per_window * self.group_size

    @property
    def branch_len(self) -> int:
        """Teacher-forced branch length: open marker, L thought slots, close marker."""
        return len(self.open_ids) + self.thought_len + len(self.close_ids)

    def with_markers(self, tokenizer) -> "RolloutConfig":
        """Fill `open_ids`/`close_ids` from the text markers (ids already set are kept)."""
        def ids(text: str, current: tuple[int, ...]) -> tuple[int, ...]:
            if current:
                return current
            single = tokenizer.token_to_id(text)
            return (int(single),) if single is not None else tuple(int(i) for i in tokenizer.encode(text))
        return self.replace(open_ids=ids(self.open_text, self.open_ids),
                            close_ids=ids(self.close_text, self.close_ids))

    def resolve_thought_len(self, window_len: int, max_seq_len: int) -> "RolloutConfig":
        """`thought_len` auto (-1) → min(2048, the positions the model has left after a window
        and the markers); an explicit length is kept."""
        if self.thought_len != AUTO:
            return self
        room = max_seq_len - window_len - max(len(self.open_ids), 1) - max(len(self.close_ids), 1)
        need(room >= 1, f"rollout.thought_len (auto): no positions left for a thought after {window_len} "
                        f"context tokens and the markers (model.max_seq_len {max_seq_len})")
        return self.replace(thought_len=min(PAPER_THOUGHT_LEN, room))

    def short_thought_warning(self, model_params: int, small_model: int = 50_000_000) -> str | None:
        """One line when a real model would think in fewer than 512 tokens (Table S.1)."""
        if self.allow_short_thoughts or model_params < small_model or self.thought_len >= SHORT_THOUGHT:
            return None
        return (f"warning: rollout.thought_len={self.thought_len} is below {SHORT_THOUGHT}; the RLP paper's short "
                f"thoughts did far worse than its {PAPER_THOUGHT_LEN} (Table S.1). Set "
                f"rollout.allow_short_thoughts=true to silence this.")

    def check_window(self, window_len: int, max_seq_len: int | None = None, what: str = "a window") -> None:
        """K positions must fit after min_context, and window + markers + thought within the
        model's positions. Markers not yet turned into ids count as one token each."""
        p = "rollout"
        choices = window_len - self.min_context
        need(choices >= self.positions_per_window,
             f"{p}.positions_per_window ({self.positions_per_window}) exceeds the {max(choices, 0)} "
             f"positions {what} of {window_len} tokens offers after {p}.min_context={self.min_context}")
        markers = max(len(self.open_ids), 1) + max(len(self.close_ids), 1)
        longest = window_len + markers + self.thought_len
        if max_seq_len is not None:
            need(longest <= max_seq_len,
                 f"{p}.thought_len ({self.thought_len}) is impossible: {window_len} context tokens + markers "
                 f"+ thought need {longest} positions but the model allows {max_seq_len}")

    def check(self, window_len: int, vocab_size: int, max_seq_len: int | None = None) -> None:
        """Checks that need the data and model: markers set and in vocab, K and L fit."""
        p = "rollout"
        need(len(self.open_ids) >= 1 and len(self.close_ids) >= 1,
             f"{p}.open_ids and {p}.close_ids must be set (call with_markers(tokenizer) or give ids)")
        bad = [i for i in self.open_ids + self.close_ids if i >= vocab_size]
        need(not bad, f"{p}: marker ids {bad} are outside the model vocabulary ({vocab_size})")
        self.check_window(window_len, max_seq_len)
