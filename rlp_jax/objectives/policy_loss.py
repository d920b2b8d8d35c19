"""The policy-gradient update RLP and RPT share: advantages, the clipped surrogate on
sampled tokens, optional NTP/KL terms, and their metrics (docs/algorithms.md).

Small named functions in a registry: `ADVANTAGES[name]` maps rewards `[..., G]` to
advantages. `policy_loss` is what the optimizer differentiates; its scoring function is
injectable so tests can swap in the slow reference.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import struct

from rlp_jax.model.config import ModelConfig
from rlp_jax.objectives.base import Objective
from rlp_jax.objectives.config import PolicyLossConfig
from rlp_jax.rollout import branches as br
from rlp_jax.rollout.config import RolloutConfig


def rlp_advantages(rewards, ddof: int = 0):
    """A_i = G/(G−1)·(r_i − mean_j r_j): the unbiased leave-one-out baseline, no std scaling
    (`ddof` is unused: every estimator in the registry takes the std convention)."""
    g = rewards.shape[-1]
    return g / (g - 1) * (rewards - jnp.mean(rewards, axis=-1, keepdims=True))


def grpo_advantages(rewards, eps: float = 1e-6, ddof: int = 0):
    """A_i = (r_i − mean) / (std + eps), as in GRPO / RPT; `ddof=1` is Bessel's std (verl)."""
    centred = rewards - jnp.mean(rewards, axis=-1, keepdims=True)
    return centred / (jnp.std(rewards, axis=-1, keepdims=True, ddof=ddof) + eps)


ADVANTAGES: dict[str, Callable] = {"rlp": rlp_advantages, "grpo": grpo_advantages}
STD_DDOF = {"population": 0, "bessel": 1}


def advantages(rewards, group_size: int, estimator: str, std: str = "population"):
    """Rewards `[B, K·G]` → advantages `[B, K·G]` (stop-gradient constants)."""
    batch, branches = rewards.shape
    grouped = rewards.reshape(batch, branches // group_size, group_size)
    adv = ADVANTAGES[estimator](grouped, ddof=STD_DDOF[std])
    return jax.lax.stop_gradient(adv.reshape(batch, branches))


def equal_reward_groups(rewards, group_size: int, keep=None, tol: float = 1e-6):
    """Fraction of groups whose G rewards are all equal (they carry no learning signal),
    among the groups marked in `keep` (all by default)."""
    grouped = rewards.reshape(-1, group_size)
    equal = (jnp.max(grouped, -1) - jnp.min(grouped, -1)) <= tol
    if keep is None:
        return jnp.mean(equal)
    keep = keep.reshape(-1)
    return jnp.sum(equal & keep) / jnp.maximum(jnp.sum(keep), 1)


def valid_mean(values, valid):
    """Mean of `values` over the entries marked `valid` (same shape); 0 if none."""
    values = values.astype(jnp.float32)
    return jnp.sum(jnp.where(valid, values, 0.0)) / jnp.maximum(jnp.sum(valid), 1)


def masked_mean_per_branch(values, mask):
    """(1/|c|) Σ_u values over each branch's thought tokens; 0 for an empty thought."""
    return jnp.sum(jnp.where(mask, values, 0.0), -1) / jnp.maximum(jnp.sum(mask, -1), 1)


def clipped_surrogate(logp, logp_old, adv, mask, eps_low: float, eps_high: float, valid=None,
                      aggregation: str = "sequence"):
    """−mean_branches[(1/|c|) Σ_u min(ρ_u A, clip(ρ_u, 1−ε_low, 1+ε_high) A)], ρ = e^{logp−logp_old}.

    `aggregation="token"` averages over all tokens of all branches instead (verl's
    token-mean). Branches not `valid` (filtered or unfilled RPT groups) are left out of the
    mean entirely, numerator and denominator. Returns `(loss, clipped)` where `clipped`
    marks tokens whose gradient the clip removed.
    """
    ratio = jnp.exp(logp - logp_old)
    a = adv[..., None]
    unclipped = ratio * a
    clipped_obj = jnp.clip(ratio, 1.0 - eps_low, 1.0 + eps_high) * a
    objective = jnp.minimum(unclipped, clipped_obj)
    if aggregation == "token":
        mask = mask if valid is None else mask & valid[..., None]
        loss = -_token_mean(objective, mask)
    elif valid is None:
        loss = -jnp.mean(masked_mean_per_branch(objective, mask))
    else:
        per_branch = masked_mean_per_branch(objective, mask)
        loss = -jnp.sum(jnp.where(valid, per_branch, 0.0)) / jnp.maximum(jnp.sum(valid), 1)
    return loss, mask & (clipped_obj < unclipped)


@struct.dataclass
class LossBatch:
    """One minibatch of branches: the window they read, their thoughts and constants."""

    window: jax.Array  # [B, T] tokens, or a `Window` (packed documents)
    t: jax.Array  # [B, R]
    thoughts: jax.Array  # [B, R, L]
    lengths: jax.Array  # [B, R]
    logp_old: jax.Array  # [B, R, L]
    advantages: jax.Array  # [B, R]
    ref_logp: jax.Array | None = None  # [B, R, L] only when kl_beta > 0
    valid: jax.Array | None = None  # [B, R] branches that count in the loss (default: all)
    # One update per rollout: the old log-probs are the teacher-forced ones (stop-gradient), so
    # ρ = 1 exactly; `logp_old` (from decoding) then only feeds the `logp_mismatch` metric.
    old_from_forced: bool = struct.field(pytree_node=False, default=False)

    def minibatch(self, index, count: int, axis: int = 1) -> "LossBatch":
        """Part `index` of `count` of the branch axis (whole groups: K splits, G stays), or of
        the row axis (`axis=0`, windows included: RPT's one-group rows)."""
        if count == 1:
            return self
        size = self.t.shape[axis] // count
        names = ("t", "thoughts", "lengths", "logp_old", "advantages", "ref_logp", "valid")

        def cut(a):
            return None if a is None else jax.lax.dynamic_slice_in_dim(a, index * size, size, axis=axis)
        parts = {name: cut(getattr(self, name)) for name in names}
        if axis == 0:
            parts["window"] = jax.tree.map(cut, self.window)
        return self.replace(**parts)


def _token_mean(values, mask):
    return jnp.sum(jnp.where(mask, values, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


TOKEN_METRICS = ("clip_frac", "approx_kl", "entropy", "logp_mismatch")  # means over thought tokens


def combine_metrics(stacked: dict) -> dict:
    """Metrics of equal-size microbatches `[n]` → the full batch's: token means weighted by
    their `thought_tokens`, token counts summed, branch means (the loss) averaged."""
    tokens = stacked["thought_tokens"]
    out = {}
    for name, value in stacked.items():
        if name in TOKEN_METRICS:
            out[name] = jnp.sum(value * tokens) / jnp.maximum(jnp.sum(tokens), 1)
        else:
            out[name] = jnp.sum(value) if name == "thought_tokens" else jnp.mean(value)
    return out


def policy_loss(params, cfg: ModelConfig, rollout: RolloutConfig, lcfg: PolicyLossConfig, batch: LossBatch,
                ntp_coef: float = 0.0, score_fn: Callable = br.score_branches):
    """Clipped surrogate (+ ntp_coef·NTP after the thought + kl_beta·KL to the reference).

    With ntp_coef = 0, S_pred is stop-gradient: no gradient path through next-token scores.
    Returns `(loss, metrics)`.
    """
    scores = score_fn(params, cfg, rollout, batch.window, batch.t, batch.thoughts, batch.lengths)
    mask = scores.thought_mask
    forced = jax.lax.stop_gradient(scores.thought_logp)
    logp_old = forced if batch.old_from_forced else jax.lax.stop_gradient(batch.logp_old)
    adv = jax.lax.stop_gradient(batch.advantages)
    loss, clipped = clipped_surrogate(scores.thought_logp, logp_old, adv, mask, lcfg.eps_low, lcfg.eps_high,
                                      batch.valid, lcfg.loss_aggregation)
    if batch.valid is not None:
        mask = mask & batch.valid[..., None]
    s_pred = scores.s_pred if ntp_coef > 0 else jax.lax.stop_gradient(scores.s_pred)
    if ntp_coef > 0:
        loss = loss - ntp_coef * jnp.mean(s_pred)
    log_ratio = jax.lax.stop_gradient(scores.thought_logp - logp_old)
    metrics = {
        "clip_frac": _token_mean(clipped.astype(jnp.float32), mask),
        "approx_kl": _token_mean(jnp.exp(log_ratio) - 1.0 - log_ratio, mask),  # k3 of KL(old‖new)
        "entropy": _token_mean(jax.lax.stop_gradient(scores.entropy), mask),
        "s_pred_new": jnp.mean(jax.lax.stop_gradient(s_pred)),
        "thought_tokens": jnp.sum(mask).astype(jnp.float32),
    }
    if batch.old_from_forced:  # |log π decoded − log π teacher-forced| of the same θ (bf16 drift)
        metrics["logp_mismatch"] = _token_mean(jnp.abs(jax.lax.stop_gradient(batch.logp_old) - forced), mask)
    if lcfg.kl_beta > 0:
        d = jax.lax.stop_gradient(batch.ref_logp) - scores.thought_logp
        kl = jnp.mean(masked_mean_per_branch(jnp.exp(d) - d - 1.0, mask))
        loss = loss + lcfg.kl_beta * kl
        metrics["kl_ref"] = jax.lax.stop_gradient(kl)
    metrics["loss"] = jax.lax.stop_gradient(loss)
    return loss, metrics


class PolicyObjective(Objective):
    """An objective trained by `policy_loss`: its `loss_cfg` sets how many updates a rollout
    feeds and how the branches split into minibatches and accumulation microbatches."""

    loss_cfg: PolicyLossConfig

    @property
    def updates_per_rollout(self) -> int:
        return self.loss_cfg.updates_per_rollout

    @property
    def minibatches(self) -> int:
        return self.loss_cfg.minibatches

    @property
    def needs_reference(self) -> bool:
        return self.loss_cfg.kl_beta > 0

    @property
    def grad_accumulation(self) -> int:
        return self.loss_cfg.grad_accumulation

    def minibatch(self, batch: LossBatch, index, count: int) -> LossBatch:
        return batch.minibatch(index, count)

    def reference_logp(self, reference, rollout: RolloutConfig, window, t, thoughts, lengths):
        """The KL reference policy's log-probs of the sampled tokens (None without a KL term)."""
        if self.loss_cfg.kl_beta <= 0:
            return None
        return br.score_branches(reference, self.model, rollout, window, t, thoughts, lengths).thought_logp

    def combine_metrics(self, stacked: dict) -> dict:
        return combine_metrics(stacked)
