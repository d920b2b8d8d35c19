"""RLP's information-gain reward (DESIGN §2.1): r = S_pred − S_ema, a constant for the loss.

S_pred comes from the rollout (θ_old scoring x_t after the teacher-forced close marker);
S_ema from one no-think teacher-forced pass of the EMA teacher φ over the whole window,
which also yields the per-position entropy used to choose where to think.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlp_jax.model import transformer as model_lib
from rlp_jax.model import vocab_scores
from rlp_jax.model.config import ModelConfig


def no_think_scores(ema_params, cfg: ModelConfig, window):
    """`(S_ema [B, T], entropy [B, T])`: log p_φ(x_t | x_<t) and the entropy of p_φ(· | x_<t).

    Column 0 has no context and is 0 in both (positions start at min_context ≥ 1).
    """
    hidden = model_lib.forward(ema_params, cfg, window, head=False)[:, :-1]
    score, entropy = vocab_scores.target_scores(ema_params, cfg, hidden, window[:, 1:])
    return _pad_first_column(score), _pad_first_column(entropy)


def _pad_first_column(per_target):
    return jnp.concatenate([jnp.zeros((per_target.shape[0], 1), jnp.float32), per_target], axis=1)


def scores_from_logits(logits, window):
    """`no_think_scores` given the teacher-forced logits `[B, T-1, V]` (reuse a forward pass)."""
    score, entropy = vocab_scores.logit_scores(logits, window[:, 1:])
    return _pad_first_column(score), _pad_first_column(entropy)


def at_branches(per_position, t_branch):
    """Gather a `[B, T]` per-position quantity at each branch's position `[B, R]`."""
    return jnp.take_along_axis(per_position, t_branch, axis=1)


def information_gain(s_pred, s_ema):
    """r = S_pred − S_ema, with no gradient through either score."""
    return jax.lax.stop_gradient(s_pred - s_ema)
