"""The no-think pass: teacher-forced scores of every position without a thought.

RLP's S_ema comes from here (the EMA teacher φ over the whole window, once per step),
and so does the per-position entropy that chooses where to think. Arrays follow the
per-position convention of `rlp_jax.rollout.positions` (column t: predicting x_t).
"""

from __future__ import annotations

import jax.numpy as jnp

from rlp_jax.model import transformer as model_lib
from rlp_jax.model import vocab_scores
from rlp_jax.model.config import ModelConfig
from rlp_jax.rollout.positions import per_position
from rlp_jax.rollout.window import as_window, target_mask


def window_forward(params, cfg: ModelConfig, window, head: bool = True):
    """Teacher-forced logits (hidden states if not `head`) of a window, each document
    attending within itself at its own RoPE positions: the masks the branches read under."""
    w = as_window(window)
    return model_lib.forward(params, cfg, w.tokens, w.positions, w.segment_ids, head=head)


def no_think_scores(params, cfg: ModelConfig, window):
    """`(S [B, T], entropy [B, T])`: log p(x_t | x_<t) and the entropy of p(· | x_<t).

    Column 0 has no context and is 0 in both (positions start at min_context ≥ 1), and so is
    every column whose x_t starts a document or is padding (`window.target_mask`).
    """
    w = as_window(window)
    hidden = window_forward(params, cfg, w, head=False)[:, :-1]
    return _masked(vocab_scores.target_scores(params, cfg, hidden, w.tokens[:, 1:]), w)


def scores_from_logits(logits, window):
    """`no_think_scores` given the teacher-forced logits `[B, T-1, V]` (reuse a forward pass)."""
    w = as_window(window)
    return _masked(vocab_scores.logit_scores(logits, w.tokens[:, 1:]), w)


def _masked(per_target, w):
    valid = target_mask(w)
    return tuple(jnp.where(valid, per_position(a), 0.0) for a in per_target)
