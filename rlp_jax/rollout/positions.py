"""Where to think, and how hard a position is.

One convention for per-position arrays `[B, T]`: column t describes predicting x_t from
x_<t (its score, its entropy, its difficulty); column 0 has no context and holds 0.
`per_position` turns per-target arrays `[B, T-1]` (from logits at columns 0..T-2) into it.

`uniform` draws K distinct positions at random; `entropy` takes the K positions where the
EMA teacher's no-think prediction is most uncertain (free: the pass that gives S_ema).
Only eligible positions are chosen: x_t a real token of the same document as x_{t-1}, with
at least `min_context` tokens of that document before it (`eligible`); a window with fewer
than K of them marks the rest not `ok` (they are rolled out empty and left out of losses
and metrics).
Difficulty buckets follow RPT: a proxy's entropy over its top-16 next tokens, nested
easy > 0.5, medium > 1.0, hard > 1.5 nats.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rlp_jax.rollout.config import RolloutConfig
from rlp_jax.rollout.window import as_window, target_mask

BUCKETS = (("all", -math.inf), ("easy", 0.5), ("medium", 1.0), ("hard", 1.5))


def per_position(per_target):
    """`[B, T-1]` values for targets x_1..x_{T-1} → `[B, T]` indexed by position t."""
    return jnp.concatenate([jnp.zeros_like(per_target[:, :1]), per_target], axis=1)


def eligible(window, min_context: int):
    """`[B, T]` True where a thought may go before x_t: a real token continuing its document,
    with at least `min_context` tokens of that document before it."""
    w = as_window(window)
    return target_mask(w) & (w.positions >= min_context)


def choose_positions(key, entropy, rcfg: RolloutConfig, window=None):
    """Positions `t [B, K]` (sorted) from the per-position no-think `entropy [B, T]`, among
    the `eligible` ones of `window` (default: every slot from `min_context` on)."""
    return choose_positions_ok(key, entropy, rcfg, window)[0]


def choose_positions_ok(key, entropy, rcfg: RolloutConfig, window=None):
    """`(t [B, K] sorted, ok [B, K])`: as `choose_positions`, with `ok` False where a window
    had fewer than K eligible positions (those slots hold ineligible positions)."""
    batch, window_len = entropy.shape
    allowed = (jnp.broadcast_to(jnp.arange(window_len) >= rcfg.min_context, entropy.shape) if window is None
               else eligible(window, rcfg.min_context))
    if rcfg.position_strategy == "uniform":
        score = jax.random.uniform(key, (batch, window_len))
    else:  # "entropy" (validated in RolloutConfig)
        score = entropy.astype(jnp.float32)
    score = jnp.where(allowed, score, -jnp.inf)
    _, t = jax.lax.top_k(score, rcfg.positions_per_window)
    t = jnp.sort(t, axis=1).astype(jnp.int32)
    return t, jnp.take_along_axis(allowed, t, axis=1)
