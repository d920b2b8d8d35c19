"""Where to think: K distinct positions per window, at least `min_context` tokens in.

`uniform` draws them at random; `entropy` takes the K positions where the EMA teacher's
no-think prediction is most uncertain (the same pass that gives S_ema, so it is free).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlp_jax.objectives.config import RLPConfig


def choose_positions(key, entropy, rcfg: RLPConfig):
    """Positions `t [B, K]` (sorted) from the no-think `entropy [B, T]`."""
    batch, window_len = entropy.shape
    eligible = jnp.arange(window_len) >= rcfg.min_context
    if rcfg.position_strategy == "uniform":
        score = jax.random.uniform(key, (batch, window_len))
    else:  # "entropy" (validated in RLPConfig)
        score = entropy.astype(jnp.float32)
    score = jnp.where(eligible, score, -jnp.inf)
    _, t = jax.lax.top_k(score, rcfg.positions_per_window)
    return jnp.sort(t, axis=1).astype(jnp.int32)
