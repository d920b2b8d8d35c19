"""Advantages, the clipped surrogate on thought tokens, optional NTP/KL terms, and metrics.

Small named functions in registries (after Tunix `algo_core`): `ADVANTAGES[name]` maps
rewards `[..., G]` to advantages. `rlp_loss` is what the optimizer differentiates; its
scoring function is injectable so tests can swap in the slow reference.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import struct

from rlp_jax.rollout import branches as br
from rlp_jax.model.config import ModelConfig
from rlp_jax.objectives.config import RLPConfig


def rlp_advantages(rewards):
    """A_i = G/(G−1)·(r_i − mean_j r_j): the unbiased leave-one-out baseline, no std scaling."""
    g = rewards.shape[-1]
    return g / (g - 1) * (rewards - jnp.mean(rewards, axis=-1, keepdims=True))


def grpo_advantages(rewards, eps: float = 1e-6):
    """A_i = (r_i − mean) / (std + eps), as in GRPO / RPT."""
    centred = rewards - jnp.mean(rewards, axis=-1, keepdims=True)
    return centred / (jnp.std(rewards, axis=-1, keepdims=True) + eps)


ADVANTAGES: dict[str, Callable] = {"rlp": rlp_advantages, "grpo": grpo_advantages}


def advantages(rewards, rcfg: RLPConfig):
    """Rewards `[B, K·G]` → advantages `[B, K·G]` (stop-gradient constants)."""
    batch, branches = rewards.shape
    grouped = rewards.reshape(batch, branches // rcfg.group_size, rcfg.group_size)
    return jax.lax.stop_gradient(ADVANTAGES[rcfg.advantage](grouped).reshape(batch, branches))


def equal_reward_groups(rewards, group_size: int, tol: float = 1e-6):
    """Fraction of groups whose G rewards are all equal (they carry no learning signal)."""
    grouped = rewards.reshape(-1, group_size)
    return jnp.mean((jnp.max(grouped, -1) - jnp.min(grouped, -1)) <= tol)


def masked_mean_per_branch(values, mask):
    """(1/|c|) Σ_u values over each branch's thought tokens; 0 for an empty thought."""
    return jnp.sum(jnp.where(mask, values, 0.0), -1) / jnp.maximum(jnp.sum(mask, -1), 1)


def clipped_surrogate(logp, logp_old, adv, mask, eps_low: float, eps_high: float):
    """−mean_branches[(1/|c|) Σ_u min(ρ_u A, clip(ρ_u, 1−ε_low, 1+ε_high) A)], ρ = e^{logp−logp_old}.

    Returns `(loss, clipped)` where `clipped` marks tokens whose gradient the clip removed.
    """
    ratio = jnp.exp(logp - logp_old)
    a = adv[..., None]
    unclipped = ratio * a
    clipped_obj = jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high) * a
    per_branch = masked_mean_per_branch(jnp.minimum(unclipped, clipped_obj), mask)
    return -jnp.mean(per_branch), mask & (clipped_obj < unclipped)


@struct.dataclass
class LossBatch:
    """One minibatch of branches: the window they read, their thoughts and constants."""

    window: jax.Array  # [B, T]
    t: jax.Array  # [B, R]
    thoughts: jax.Array  # [B, R, L]
    lengths: jax.Array  # [B, R]
    logp_old: jax.Array  # [B, R, L]
    advantages: jax.Array  # [B, R]
    ref_logp: jax.Array | None = None  # [B, R, L] only when kl_beta > 0


def _token_mean(values, mask):
    return jnp.sum(jnp.where(mask, values, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


def rlp_loss(params, cfg: ModelConfig, rcfg: RLPConfig, batch: LossBatch,
             score_fn: Callable = br.score_branches):
    """Clipped surrogate (+ ntp_coef·NTP after the thought + kl_beta·KL to the reference).

    With ntp_coef = 0, S_pred is stop-gradient: no gradient path through next-token scores.
    Returns `(loss, metrics)`.
    """
    scores = score_fn(params, cfg, rcfg, batch.window, batch.t, batch.thoughts, batch.lengths)
    mask = scores.thought_mask
    logp_old = jax.lax.stop_gradient(batch.logp_old)
    adv = jax.lax.stop_gradient(batch.advantages)
    loss, clipped = clipped_surrogate(scores.thought_logp, logp_old, adv, mask, rcfg.eps_low, rcfg.eps_high)
    s_pred = scores.s_pred if rcfg.ntp_coef > 0 else jax.lax.stop_gradient(scores.s_pred)
    if rcfg.ntp_coef > 0:
        loss = loss - rcfg.ntp_coef * jnp.mean(s_pred)
    log_ratio = jax.lax.stop_gradient(scores.thought_logp - logp_old)
    metrics = {
        "clip_frac": _token_mean(clipped.astype(jnp.float32), mask),
        "approx_kl": _token_mean(jnp.exp(log_ratio) - 1.0 - log_ratio, mask),  # k3 of KL(old‖new)
        "entropy": _token_mean(jax.lax.stop_gradient(scores.entropy), mask),
        "s_pred_new": jnp.mean(jax.lax.stop_gradient(s_pred)),
    }
    if rcfg.kl_beta > 0:
        d = jax.lax.stop_gradient(batch.ref_logp) - scores.thought_logp
        kl = jnp.mean(masked_mean_per_branch(jnp.exp(d) - d - 1.0, mask))
        loss = loss + rcfg.kl_beta * kl
        metrics["kl_ref"] = jax.lax.stop_gradient(kl)
    metrics["loss"] = jax.lax.stop_gradient(loss)
    return loss, metrics
