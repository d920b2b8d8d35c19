"""RLP (Hatamizadeh et al. 2025): reinforcement with the information-gain reward.
Read it top to bottom; docs/algorithms.md gives the equations.

    rollout     EMA teacher φ, no thought: S_ema and entropy at every position
                → K positions per window → G thoughts each with θ_old (prefix-shared);
                each document of a packed window is seen alone, by both models
    reward      r = S_pred − S_ema (a constant for the loss)
    loss_batch  A = G/(G−1)·(r − mean_G r); reference (θ_0) scores if kl_beta > 0
    loss        clipped surrogate on the thought tokens (+ optional NTP and KL terms)

`rlp_jax.train.step` then takes `updates_per_rollout × minibatches` optimizer steps,
each followed by the EMA step φ ← τφ + (1 − τ)θ.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import struct

from rlp_jax.model.config import ModelConfig
from rlp_jax.objectives import policy_loss as pl
from rlp_jax.objectives.config import RLPConfig
from rlp_jax.rollout import branches as br
from rlp_jax.rollout.config import RolloutConfig
from rlp_jax.rollout.no_think import no_think_scores
from rlp_jax.rollout.thoughts import Rollout, think_at_eligible
from rlp_jax.rollout.window import as_window


def information_gain(s_pred, s_ema):
    """r = S_pred − S_ema, with no gradient through either score."""
    return jax.lax.stop_gradient(s_pred - s_ema)


@struct.dataclass
class Experience:
    roll: Rollout
    s_ema: jax.Array  # [B, R] log p_φ(x_t | x_<t) at each branch's position
    valid: jax.Array  # [B, R] branches at an eligible position (False only in windows short of K)


@dataclasses.dataclass(frozen=True)
class RLP(pl.PolicyObjective):
    model: ModelConfig
    rollout_cfg: RolloutConfig
    loss_cfg: RLPConfig = RLPConfig()
    name = "rlp"

    def rollout(self, params, teacher, window, key) -> Experience:
        window = as_window(window)
        s_ema, entropy = no_think_scores(teacher, self.model, window)
        roll, valid = think_at_eligible(params, self.model, self.rollout_cfg, window, entropy, key)
        return Experience(roll=roll, s_ema=br.at_branches(s_ema, roll.t), valid=valid)

    def reward(self, experience: Experience, window):
        return information_gain(experience.roll.s_pred, experience.s_ema)

    def loss_batch(self, experience: Experience, reward, window, reference):
        roll, lcfg, valid, group = experience.roll, self.loss_cfg, experience.valid, self.rollout_cfg.group_size
        window = as_window(window)
        # reference policy (kl_beta > 0): the fixed θ_0 the train state keeps (paper §10)
        ref_logp = self.reference_logp(reference, self.rollout_cfg, window, roll.t, roll.thoughts, roll.lengths)
        adv = pl.advantages(reward, group, lcfg.advantage)
        batch = pl.LossBatch(window=window, t=roll.t, thoughts=roll.thoughts, lengths=roll.lengths,
                             logp_old=roll.logp, advantages=jnp.where(valid, adv, 0.0), ref_logp=ref_logp,
                             valid=valid, old_from_forced=lcfg.single_update)
        mean = functools.partial(pl.valid_mean, valid=valid)
        metrics = dict(
            reward_mean=mean(reward), reward_std=jnp.sqrt(mean(jnp.square(reward - mean(reward)))),
            s_pred=mean(roll.s_pred), s_ema=mean(experience.s_ema), thought_len=mean(roll.lengths),
            equal_reward_groups=pl.equal_reward_groups(reward, group, keep=valid[:, ::group]),
        )
        return batch, metrics

    def loss(self, params, batch: pl.LossBatch):
        return pl.policy_loss(params, self.model, self.rollout_cfg, self.loss_cfg, batch,
                              ntp_coef=self.loss_cfg.ntp_coef)
