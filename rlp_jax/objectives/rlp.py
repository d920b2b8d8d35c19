"""The RLP train step (DESIGN §2.1, §3.2), compiled end to end: read `rlp_step` top to bottom.

    EMA no-think pass → choose K positions → G thoughts each with θ_old (prefix-shared)
    → r = S_pred − S_ema → advantages → updates_per_rollout × minibatches optimizer
    steps on the clipped surrogate → EMA update after every optimizer step.

`make_rlp_step` jits it with explicit shardings (params, optimizer state and EMA share the
parameter shardings; windows shard over the batch axes) and donates the state.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import Mesh

from rlp_jax.rollout import branches as br
from rlp_jax.objectives import policy_loss as objective
from rlp_jax.rollout import no_think as rewards
from rlp_jax.rollout import sampling
from rlp_jax.model import sharding
from rlp_jax.model.config import ModelConfig
from rlp_jax.rollout.positions import choose_positions
from rlp_jax.objectives.config import OptimizerConfig, RLPConfig


class TrainState(struct.PyTreeNode):
    params: object
    opt_state: object
    ema_params: object  # φ; replaced by θ at step 0 (lazy init), so its initial value is unused
    step: jax.Array
    rng: jax.Array


def learning_rate_schedule(ocfg: OptimizerConfig):
    """Linear warmup, then constant / cosine / linear decay to end_lr_fraction·lr."""
    lr, end = ocfg.learning_rate, ocfg.learning_rate * ocfg.end_lr_fraction
    if ocfg.schedule == "cosine":
        decay = optax.cosine_decay_schedule(lr, ocfg.decay_steps, ocfg.end_lr_fraction)
    elif ocfg.schedule == "linear":
        decay = optax.linear_schedule(lr, end, ocfg.decay_steps)
    else:
        decay = optax.constant_schedule(lr)
    if not ocfg.warmup_steps:
        return decay
    warmup = optax.linear_schedule(0.0, lr, ocfg.warmup_steps)
    return optax.join_schedules([warmup, decay], [ocfg.warmup_steps])


def make_optimizer(ocfg: OptimizerConfig) -> optax.GradientTransformation:
    """AdamW under the schedule, after global-norm clipping (if grad_clip > 0)."""
    adamw = optax.adamw(learning_rate_schedule(ocfg), b1=ocfg.b1, b2=ocfg.b2, eps=ocfg.eps,
                        weight_decay=ocfg.weight_decay)
    return optax.chain(optax.clip_by_global_norm(ocfg.grad_clip), adamw) if ocfg.grad_clip else adamw


def init_state(params, ocfg: OptimizerConfig, rng) -> TrainState:
    return TrainState(params=params, opt_state=make_optimizer(ocfg).init(params),
                      ema_params=jax.tree.map(jnp.copy, params), step=jnp.zeros((), jnp.int32), rng=rng)


def teacher_params(state: TrainState):
    """The EMA teacher φ with its lazy init: φ ← θ at the first step (before any update)."""
    return jax.tree.map(lambda e, p: jnp.where(state.step == 0, p, e), state.ema_params, state.params)


def ema_update(ema, params, decay: float):
    """φ ← τ φ + (1 − τ) θ."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


def _minibatch(batch: objective.LossBatch, index, count: int) -> objective.LossBatch:
    """Slice `count`-th part `index` of the branch axis (whole groups: K splits, G stays)."""
    size = batch.t.shape[1] // count

    def cut(a):
        return jax.lax.dynamic_slice_in_dim(a, index * size, size, axis=1)
    return batch.replace(**{name: cut(getattr(batch, name)) for name in
                            ("t", "thoughts", "lengths", "logp_old", "advantages")},
                         ref_logp=None if batch.ref_logp is None else cut(batch.ref_logp))


def optimize(params, opt_state, ema, batch: objective.LossBatch, *, cfg: ModelConfig, rcfg: RLPConfig,
             ocfg: OptimizerConfig):
    """`updates_per_rollout` passes × `minibatches` optimizer steps on the clipped surrogate,
    each followed by an EMA step. Returns `(params, opt_state, ema, per-update metrics)`."""
    optimizer = make_optimizer(ocfg)
    grad_fn = jax.grad(objective.rlp_loss, has_aux=True)

    def update(carry, i):
        params, opt_state, ema = carry
        mb = _minibatch(batch, i % rcfg.minibatches, rcfg.minibatches)
        grads, metrics = grad_fn(params, cfg, rcfg, mb)
        metrics["grad_norm"] = optax.tree.norm(grads)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state, ema_update(ema, params, rcfg.ema_decay)), metrics

    steps = jnp.arange(rcfg.updates_per_rollout * rcfg.minibatches)
    (params, opt_state, ema), per_update = jax.lax.scan(update, (params, opt_state, ema), steps)
    return params, opt_state, ema, per_update


def rlp_step(state: TrainState, window, *, cfg: ModelConfig, rcfg: RLPConfig, ocfg: OptimizerConfig):
    """One RLP step on windows `[B, T]`; returns `(new_state, metrics)`."""
    rng, key_positions, key_rollout = jax.random.split(state.rng, 3)
    ema = teacher_params(state)  # lazy init: φ ← θ at the first step

    # 1. EMA teacher, no thought, teacher forcing: S_ema and entropy at every position.
    s_ema_all, entropy = rewards.no_think_scores(ema, cfg, window)
    # 2. K positions per window.
    t = choose_positions(key_positions, entropy, rcfg)
    # 3. G thoughts per position with θ_old (one prefill per window, prefix-shared decode).
    old_params = jax.lax.stop_gradient(state.params)
    roll = sampling.rollout_thoughts(old_params, cfg, rcfg, window, t, key_rollout)
    # 4. Information gain r = S_pred − S_ema (constants).
    s_ema = rewards.at_branches(s_ema_all, roll.t)
    reward = rewards.information_gain(roll.s_pred, s_ema)
    # 5. Advantages within each group of G.
    adv = objective.advantages(reward, rcfg)
    ref_logp = None
    if rcfg.kl_beta > 0:  # reference policy = the EMA teacher
        ref_logp = br.score_branches(ema, cfg, rcfg, window, roll.t, roll.thoughts, roll.lengths).thought_logp
    batch = objective.LossBatch(window=window, t=roll.t, thoughts=roll.thoughts, lengths=roll.lengths,
                                logp_old=roll.logp, advantages=adv, ref_logp=ref_logp)

    # 6. updates_per_rollout passes × minibatches, each an optimizer step then an EMA step.
    params, opt_state, ema, per_update = optimize(state.params, state.opt_state, ema, batch,
                                                  cfg=cfg, rcfg=rcfg, ocfg=ocfg)

    metrics = {name: jnp.mean(value) for name, value in per_update.items()}
    metrics.update(
        reward_mean=jnp.mean(reward), reward_std=jnp.std(reward), s_pred=jnp.mean(roll.s_pred),
        s_ema=jnp.mean(s_ema), thought_len=jnp.mean(roll.lengths.astype(jnp.float32)),
        equal_reward_groups=objective.equal_reward_groups(reward, rcfg.group_size),
    )
    new_state = TrainState(params=params, opt_state=opt_state, ema_params=ema, step=state.step + 1, rng=rng)
    return new_state, metrics


rlp_step_jit = jax.jit(rlp_step, static_argnames=("cfg", "rcfg", "ocfg"), donate_argnums=0)


def state_shardings(state: TrainState, cfg: ModelConfig, mesh: Mesh, rules=sharding.DEFAULT_RULES):
    """Shardings of a `TrainState`: params, opt_state and EMA alike; step and rng replicated."""
    params = sharding.param_shardings(cfg, mesh, rules)
    return TrainState(params=params, opt_state=sharding.shardings_like(state.opt_state, params, mesh),
                      ema_params=params, step=sharding.replicated(mesh), rng=sharding.replicated(mesh))


def make_rlp_step(cfg: ModelConfig, rcfg: RLPConfig, ocfg: OptimizerConfig, mesh: Mesh, state: TrainState,
                  rules=sharding.DEFAULT_RULES):
    """`step(state, window) -> (state, metrics)` compiled with shardings on `mesh`.

    Also returns the state shardings, to place a fresh state with `jax.device_put`.
    """
    shardings = state_shardings(state, cfg, mesh, rules)
    fn = functools.partial(rlp_step, cfg=cfg, rcfg=rcfg, ocfg=ocfg)
    step = sharding.sharded_jit(fn, mesh, in_shardings=(shardings, sharding.batch_sharding(mesh, 2, rules)),
                                out_shardings=(shardings, sharding.replicated(mesh)), donate_argnums=(0,),
                                rules=rules)
    return step, shardings
