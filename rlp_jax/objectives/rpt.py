"""RPT (Dong et al. 2025): think, answer, and be rewarded for an exact prefix match.

One step has a host part in the middle, because the reward compares decoded text:

    rollout     proxy entropy (the EMA teacher's top-16) → the K hardest positions, those
                above the threshold kept → G completions each ("<think> … </think>
                \\boxed{answer}", ended by EOS), sampled with θ_old
    reward      (host) decode, extract the answer, byte-prefix + token-boundary reward
    loss_batch  GRPO advantages (r − mean)/std within groups, zero for filtered positions
    loss        the clipped surrogate on the completion tokens

Completions end at the tokenizer's EOS, not at the close-thought marker (which comes
before the answer): the rollout config this objective samples with is the user's
`rollout` section with its close marker set to EOS, made explicit in `completion_config`.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rlp_jax.model import transformer as model_lib
from rlp_jax.model.config import ModelConfig
from rlp_jax.model.vocab_scores import top_k_entropy
from rlp_jax.objectives import policy_loss as pl
from rlp_jax.objectives.config import RPTConfig
from rlp_jax.objectives.prefix_match import rpt_reward
from rlp_jax.rollout import branches as br
from rlp_jax.rollout.config import RolloutConfig
from rlp_jax.rollout.positions import choose_positions, per_position
from rlp_jax.rollout.thoughts import Rollout, rollout_thoughts


def completion_config(rollout: RolloutConfig, eos_id: int) -> RolloutConfig:
    """The user's rollout settings, with completions ending at EOS; entropy positions."""
    return rollout.replace(close_ids=(int(eos_id),), position_strategy="entropy")


@struct.dataclass
class Experience:
    roll: Rollout
    keep: jax.Array  # [B, K] positions above the entropy threshold


def rpt_rewards(roll: Rollout, window, tokenizer, pcfg: RPTConfig) -> np.ndarray:
    """Host-side rewards `[B, K·G]` from the decoded completions."""
    thoughts, lengths, t = (np.asarray(a) for a in (roll.thoughts, roll.lengths, roll.t))
    window = np.asarray(window)
    out = np.zeros(t.shape, np.float32)
    for b, r in np.ndindex(*t.shape):
        pos = int(t[b, r])
        completion = tokenizer.decode(thoughts[b, r, : lengths[b, r]].tolist())
        context = window[b, max(0, pos - pcfg.context_tokens):pos].tolist()
        continuation = window[b, pos:pos + pcfg.continuation_tokens].tolist()
        out[b, r] = rpt_reward(completion, tokenizer, context, continuation, pcfg.tags)
    return out


@dataclasses.dataclass(frozen=True)
class RPT(pl.PolicyObjective):
    model: ModelConfig
    rollout_cfg: RolloutConfig  # from `completion_config`
    loss_cfg: RPTConfig
    tokenizer: object = dataclasses.field(compare=False, hash=False)
    name = "rpt"
    host_reward = True

    def rollout(self, params, teacher, window, key) -> Experience:
        key_pos, key_roll = jax.random.split(key)
        entropy = per_position(top_k_entropy(model_lib.forward(teacher, self.model, window)[:, :-1]))
        t = choose_positions(key_pos, entropy, self.rollout_cfg)
        keep = br.at_branches(entropy, t) > self.loss_cfg.entropy_threshold
        roll = rollout_thoughts(params, self.model, self.rollout_cfg, window, t, key_roll)
        return Experience(roll=roll, keep=keep)

    def reward(self, experience: Experience, window) -> np.ndarray:
        return rpt_rewards(experience.roll, window, self.tokenizer, self.loss_cfg)

    def loss_batch(self, experience: Experience, reward, window, teacher):
        roll, group = experience.roll, self.rollout_cfg.group_size
        keep_branch = jnp.repeat(experience.keep, group, axis=1)
        adv = jnp.where(keep_branch, pl.advantages(reward, group, self.loss_cfg.advantage), 0.0)
        batch = pl.LossBatch(window=window, t=roll.t, thoughts=roll.thoughts, lengths=roll.lengths,
                             logp_old=roll.logp, advantages=adv)
        kept_groups = jnp.sum(experience.keep)
        metrics = dict(
            reward_mean=jnp.sum(jnp.where(keep_branch, reward, 0.0)) / jnp.maximum(kept_groups * group, 1),
            kept_positions=jnp.mean(experience.keep.astype(jnp.float32)),
            equal_reward_groups=pl.equal_reward_groups(reward, group, keep=experience.keep),
            completion_len=jnp.mean(roll.lengths.astype(jnp.float32)),
        )
        return batch, metrics

    def loss(self, params, batch: pl.LossBatch):
        return pl.policy_loss(params, self.model, self.rollout_cfg, self.loss_cfg, batch)
