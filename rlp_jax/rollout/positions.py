"""Where to think, and how hard a position is.

One convention for per-position arrays `[B, T]`: column t describes predicting x_t from
x_<t (its score, its entropy, its difficulty); column 0 has no context and holds 0.
`per_position` turns per-target arrays `[B, T-1]` (from logits at columns 0..T-2) into it.

`uniform` draws K distinct positions at random; `entropy` takes the K positions where the
EMA teacher's no-think prediction is most uncertain (free: the pass that gives S_ema).
Difficulty buckets follow RPT: a proxy's entropy over its top-16 next tokens, nested
easy > 0.5, medium > 1.0, hard > 1.5 nats.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rlp_jax.rollout.config import RolloutConfig

BUCKETS = (("all", -math.inf), ("easy", 0.5), ("medium", 1.0), ("hard", 1.5))


def per_position(per_target):
    """`[B, T-1]` values for targets x_1..x_{T-1} → `[B, T]` indexed by position t."""
    return jnp.concatenate([jnp.zeros_like(per_target[:, :1]), per_target], axis=1)


def choose_positions(key, entropy, rcfg: RolloutConfig):
    """Positions `t [B, K]` (sorted) from the per-position no-think `entropy [B, T]`."""
    batch, window_len = entropy.shape
    eligible = jnp.arange(window_len) >= rcfg.min_context
    if rcfg.position_strategy == "uniform":
        score = jax.random.uniform(key, (batch, window_len))
    else:  # "entropy" (validated in RolloutConfig)
        score = entropy.astype(jnp.float32)
    score = jnp.where(eligible, score, -jnp.inf)
    _, t = jax.lax.top_k(score, rcfg.positions_per_window)
    return jnp.sort(t, axis=1).astype(jnp.int32)
