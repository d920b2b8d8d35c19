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
STDS = ("population", "bessel")  # GRPO's σ: divide by G, or by G − 1 (torch.std, verl)
AGGREGATIONS = ("sequence", "token")  # mean per completion then over completions, or over all tokens


@dataclasses.dataclass(frozen=True)
class PolicyLossConfig:
    """The clipped policy-gradient update both RL objectives share (docs/algorithms.md)."""

    section: ClassVar[str] = "policy"
    eps_low: float = 0.2
    eps_high: float = 0.2
    kl_beta: float = 0.0  # KL to the reference policy (the EMA teacher)
    advantage: str = "rlp"
    std: str = "population"  # σ of the "grpo" advantage
    loss_aggregation: str = "sequence"
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
        need(self.std in STDS, f"{p}.std: unknown {self.std!r} (choose one of {STDS})")
        need(self.loss_aggregation in AGGREGATIONS,
             f"{p}.loss_aggregation: unknown {self.loss_aggregation!r} (choose one of {AGGREGATIONS})")
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


# The paper's instruction (App. D, paraphrased), placed AFTER the context: the context is a
# window prefix read through prefix-shared attention, so nothing can precede it.
RPT_TEMPLATE = ("{context}\n\n[Complete the text above. Think about the next token, then give your "
                "prediction of the next token(s) within \\boxed{{}} after your thinking.]\n")


@dataclasses.dataclass(frozen=True)
class RPTConfig(PolicyLossConfig):
    """RPT (Dong et al. 2025, §3.3 and Table 5): GRPO as verl runs it, a fixed proxy's
    entropy filter, the prompt template, the prefix-match reward and dynamic sampling."""

    section: ClassVar[str] = "rpt"
    advantage: str = "grpo"
    std: str = "bessel"  # verl's GRPO: torch.std (unbiased)
    loss_aggregation: str = "token"  # verl's default loss_agg_mode "token-mean"
    entropy_threshold: float = 0.5  # keep positions whose proxy top-16 entropy exceeds this
    proxy: str = ""  # model directory of the fixed proxy; empty = the params at step 0
    template: str = RPT_TEMPLATE  # "{context}" then text teacher-forced before the open marker
    think_end: str = "</think>"  # the answer counts only after this; empty = anywhere
    answer_open: str = ""  # answer tags; empty = the last \boxed{...}
    answer_close: str = ""
    context_tokens: int = 16  # context decoded before the continuation (keeps its leading space)
    lookahead: int = 16  # positions leave this many window tokens of continuation (more is read if there)
    dynamic_sampling_from: int = 500  # from this step, groups with equal rewards are replaced
    max_refills: int = 4  # extra rollouts per step that dynamic sampling may run

    def __post_init__(self):
        super().__post_init__()
        need(bool(self.answer_open) == bool(self.answer_close),
             "rpt.answer_open and rpt.answer_close must be set together")
        need(self.context_tokens >= 1 and self.lookahead >= 1,
             "rpt.context_tokens and rpt.lookahead must be >= 1")
        need(self.template.count("{context}") == 1 and self.template.startswith("{context}"),
             "rpt.template must start with {context} (text before the context is not supported: the "
             "context is read through the window's shared prefix) and contain it once")
        need(self.dynamic_sampling_from >= 0 and self.max_refills >= 0,
             "rpt.dynamic_sampling_from and rpt.max_refills must be >= 0")

    @property
    def tags(self):
        return (self.answer_open, self.answer_close) if self.answer_open else None

    @property
    def prompt_suffix(self) -> str:
        """The template's text after the context (teacher-forced before the open marker)."""
        return self.template.replace("{context}", "", 1).replace("{{", "{").replace("}}", "}")
