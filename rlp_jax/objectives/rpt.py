"""The RPT objective (DESIGN §2.2): think, answer, and be rewarded for an exact prefix match.

One step has a host part in the middle, because the reward compares decoded text:

    jitted  rpt_rollout   proxy entropy (EMA, top-16) → K hardest positions, the ones above
                          the threshold kept → G completions each ("<think> … </think>
                          \\boxed{answer}", ended by EOS), sampled with θ_old
    host    rpt_rewards   decode, extract the answer, byte-prefix + token-boundary reward
    jitted  rpt_update    GRPO advantages (r − mean)/std within groups, zero for filtered
                          positions; clipped surrogate on the completion tokens; EMA step
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rlp_jax.objectives import policy_loss as objective
from rlp_jax.rollout import sampling
from rlp_jax.evaluation.evaluate import top_k_entropy
from rlp_jax.model.transformer import forward
from rlp_jax.model.config import ModelConfig
from rlp_jax.rollout.positions import choose_positions
from rlp_jax.objectives.rlp import TrainState, optimize, teacher_params
from rlp_jax.objectives.config import OptimizerConfig, RLPConfig, RPTConfig
from rlp_jax.objectives.prefix_match import rpt_reward


def rpt_rollout_config(rcfg: RLPConfig, eos_id: int) -> RLPConfig:
    """Completions end at EOS (not at the close-thought marker, which precedes the answer)."""
    return rcfg.replace(close_ids=(int(eos_id),), advantage="grpo")


def rpt_rollout_fn(params, ema_params, window, key, *, cfg: ModelConfig, rcfg: RLPConfig, threshold: float):
    """`(rollout, keep [B, K])`: completions at the K positions of highest proxy entropy."""
    key_pos, key_roll = jax.random.split(key)
    entropy = top_k_entropy(forward(ema_params, cfg, window))  # entropy of p(· | x_<=s) for x_{s+1}
    entropy = jnp.concatenate([jnp.zeros_like(entropy[:, :1]), entropy[:, :-1]], axis=1)  # at t
    t = choose_positions(key_pos, entropy, rcfg.replace(position_strategy="entropy"))
    keep = jnp.take_along_axis(entropy, t, axis=1) > threshold
    roll = sampling.rollout_thoughts(jax.lax.stop_gradient(params), cfg, rcfg, window, t, key_roll)
    return roll, keep


rpt_rollout = jax.jit(rpt_rollout_fn, static_argnames=("cfg", "rcfg", "threshold"))


def rpt_rewards(roll, window, tokenizer, pcfg: RPTConfig) -> np.ndarray:
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


def rpt_update_fn(state: TrainState, window, roll, reward, keep, *, cfg: ModelConfig, rcfg: RLPConfig,
               ocfg: OptimizerConfig):
    """GRPO advantages (zero where filtered), then the optimizer and EMA steps."""
    ema = teacher_params(state)
    keep_branch = jnp.repeat(keep, rcfg.group_size, axis=1)
    adv = jnp.where(keep_branch, objective.advantages(reward, rcfg), 0.0)
    batch = objective.LossBatch(window=window, t=roll.t, thoughts=roll.thoughts, lengths=roll.lengths,
                                logp_old=roll.logp, advantages=adv)
    params, opt_state, ema, per_update = optimize(state.params, state.opt_state, ema, batch,
                                                  cfg=cfg, rcfg=rcfg, ocfg=ocfg)
    kept_groups = jnp.sum(keep)
    grouped = reward.reshape(-1, rcfg.group_size)
    equal = (jnp.max(grouped, -1) - jnp.min(grouped, -1)) <= 1e-6
    metrics = {name: jnp.mean(value) for name, value in per_update.items()}
    metrics.update(
        reward_mean=jnp.sum(jnp.where(keep_branch, reward, 0.0)) / jnp.maximum(kept_groups * rcfg.group_size, 1),
        kept_positions=jnp.mean(keep.astype(jnp.float32)),
        equal_reward_groups=jnp.sum(equal & keep.reshape(-1)) / jnp.maximum(kept_groups, 1),
        completion_len=jnp.mean(roll.lengths.astype(jnp.float32)),
    )
    rng = jax.random.split(state.rng)[0]
    return TrainState(params=params, opt_state=opt_state, ema_params=ema, step=state.step + 1, rng=rng), metrics


rpt_update = jax.jit(rpt_update_fn, static_argnames=("cfg", "rcfg", "ocfg"), donate_argnums=0)


def rpt_step(state: TrainState, window, tokenizer, *, cfg: ModelConfig, rcfg: RLPConfig,
             ocfg: OptimizerConfig, pcfg: RPTConfig, rollout=rpt_rollout, update=rpt_update):
    """One RPT step; `rcfg` must come from `rpt_rollout_config`. Returns `(state, metrics)`.

    `rollout` / `update` default to the plain jitted halves; the training driver passes
    versions compiled with shardings and the non-finite guard.
    """
    ema = teacher_params(state)
    key = jax.random.fold_in(state.rng, 1)
    roll, keep = rollout(state.params, ema, window, key, cfg=cfg, rcfg=rcfg, threshold=pcfg.entropy_threshold)
    reward = jnp.asarray(rpt_rewards(roll, window, tokenizer, pcfg))
    return update(state, window, roll, reward, keep, cfg=cfg, rcfg=rcfg, ocfg=ocfg)
