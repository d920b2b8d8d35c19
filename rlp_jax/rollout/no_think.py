"""The no-think pass: teacher-forced scores of every position without a thought.

RLP's S_ema comes from here (the EMA teacher φ over the whole window, once per step),
and so does the per-position entropy that chooses where to think. Arrays follow the
per-position convention of `rlp_jax.rollout.positions` (column t: predicting x_t).
"""

from __future__ import annotations

from rlp_jax.model import transformer as model_lib
from rlp_jax.model import vocab_scores
from rlp_jax.model.config import ModelConfig
from rlp_jax.rollout.positions import per_position


def no_think_scores(params, cfg: ModelConfig, window):
    """`(S [B, T], entropy [B, T])`: log p(x_t | x_<t) and the entropy of p(· | x_<t).

    Column 0 has no context and is 0 in both (positions start at min_context ≥ 1).
    """
    hidden = model_lib.forward(params, cfg, window, head=False)[:, :-1]
    score, entropy = vocab_scores.target_scores(params, cfg, hidden, window[:, 1:])
    return per_position(score), per_position(entropy)


def scores_from_logits(logits, window):
    """`no_think_scores` given the teacher-forced logits `[B, T-1, V]` (reuse a forward pass)."""
    score, entropy = vocab_scores.logit_scores(logits, window[:, 1:])
    return per_position(score), per_position(entropy)
