"""The one compiled training step, for every objective, behind a non-finite guard.

    experience = objective.rollout(θ_old, φ, window, key)
    reward     = objective.reward(experience, window)
    batch      = objective.loss_batch(experience, reward, window, ref)    ref: θ_0 if kept, else φ
    updates_per_rollout × minibatches: gradient of objective.loss (averaged over
        grad_accumulation microbatches) → optimizer step → EMA step

Training, tests and benchmarks all compile it through `make_train_step`. An objective
whose reward runs on the host (RPT) is compiled as two halves with the reward between.

The guard runs inside the same jitted program. A step is bad if the loss, the gradient
norm or any updated parameter is not finite (`nonfinite=1`), or if its update is absurd
for the parameters it changes: ‖Δθ‖/‖θ‖ above `max_update_ratio` (`diverged=1`). A finite
blow-up (a learning rate of 1e6) is caught at its first step this way, before the model
collapses into a state whose loss and gradients look calm. `skip` keeps the old params,
optimizer state and EMA for a bad step (step and rng still advance, so the next batch gets
fresh thoughts); with `skip=False` the loop decides (`run.nonfinite=stop`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlp_jax.model import sharding
from rlp_jax.model.sharding import MeshConfig, make_mesh
from rlp_jax.objectives.base import HostRewardObjective, Objective
from rlp_jax.train.optimizer import OptimizerConfig, make_optimizer
from rlp_jax.train.state import TrainState, ema_update, reference_params, state_shardings, teacher_params


def accumulated_grad(objective: Objective, params, batch):
    """`(grads, metrics)` of `objective.loss` on `batch`, as the mean over `grad_accumulation`
    equal microbatches (summed in float32). The loss is a mean over branches, so this is the
    full batch's gradient at a fraction of the activation memory. Each microbatch prefills
    the window once (inside the differentiated function, so gradients reach its K/V)."""
    grad_fn = jax.grad(objective.loss, has_aux=True)
    count = objective.grad_accumulation
    if count == 1:
        return grad_fn(params, batch)

    def micro(total, j):
        grads, metrics = grad_fn(params, objective.minibatch(batch, j, count))
        return jax.tree.map(lambda a, g: a + g.astype(jnp.float32), total, grads), metrics

    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
    total, stacked = jax.lax.scan(micro, zeros, jnp.arange(count))
    grads = jax.tree.map(lambda g, p: (g / count).astype(p.dtype), total, params)
    return grads, objective.combine_metrics(stacked)


def optimize(objective: Objective, ocfg: OptimizerConfig, ema_decay: float, params, opt_state, ema, batch):
    """`updates_per_rollout` passes × `minibatches` optimizer steps on `objective.loss`, each
    followed by an EMA step (Algorithm 1 takes one: both 1; memory splits use
    `grad_accumulation` instead, which keeps one step). Returns `(params, opt_state, ema,
    per-update metrics)`."""
    optimizer = make_optimizer(ocfg)
    count = objective.minibatches

    def update(carry, i):
        params, opt_state, ema = carry
        grads, metrics = accumulated_grad(objective, params, objective.minibatch(batch, i % count, count))
        metrics["grad_norm"] = optax.tree.norm(grads)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state, ema_update(ema, params, ema_decay)), metrics

    steps = jnp.arange(objective.updates_per_rollout * count)
    (params, opt_state, ema), per_update = jax.lax.scan(update, (params, opt_state, ema), steps)
    return params, opt_state, ema, per_update


def _split(state: TrainState):
    """`(next rng, this step's key)`: both halves of a host-reward step derive the same."""
    rng, key = jax.random.split(state.rng)
    return rng, key


def gather_experience(objective: Objective, state: TrainState, window):
    """The rollout with the frozen policy θ_old and the EMA teacher φ."""
    _, key = _split(state)
    return objective.rollout(jax.lax.stop_gradient(state.params), teacher_params(state), window, key)


def gather_planned(objective: HostRewardObjective, state: TrainState, window, attempt, plan):
    """A host-reward objective's rollout at the positions `plan`; the key is folded with
    `attempt` so that refills sample afresh."""
    _, key = _split(state)
    key = jax.random.fold_in(key, attempt)
    return objective.rollout(jax.lax.stop_gradient(state.params), teacher_params(state), window, key, plan)


def learn(objective: Objective, ocfg: OptimizerConfig, ema_decay: float, state: TrainState, window, experience,
          reward):
    """Advantages and constants, then the optimizer and EMA steps: `(new_state, metrics)`."""
    teacher = teacher_params(state)  # lazy init: φ ← θ at the first step
    batch, metrics = objective.loss_batch(experience, reward, window, reference_params(state))
    params, opt_state, ema, per_update = optimize(objective, ocfg, ema_decay, state.params, state.opt_state,
                                                  teacher, batch)
    metrics = {**{name: jnp.mean(value) for name, value in per_update.items()}, **metrics}
    rng, _ = _split(state)
    return state.replace(params=params, opt_state=opt_state, ema_params=ema, step=state.step + 1, rng=rng), metrics


def objective_step(objective: Objective, ocfg: OptimizerConfig, ema_decay: float, state: TrainState, window):
    """One whole step of a device-reward objective: `(new_state, metrics)`."""
    experience = gather_experience(objective, state, window)
    return learn(objective, ocfg, ema_decay, state, window, experience, objective.reward(experience, window))


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def update_ratio(old, new) -> jax.Array:
    """‖new − old‖ / ‖old‖ over the whole parameter tree, in float32."""
    delta = jax.tree.map(lambda n, o: n.astype(jnp.float32) - o.astype(jnp.float32), new, old)
    norm = optax.tree.norm(jax.tree.map(lambda o: o.astype(jnp.float32), old))
    return optax.tree.norm(delta) / jnp.maximum(norm, jnp.finfo(jnp.float32).tiny)


def guard(inner, skip: bool, max_update_ratio: float = 0.0):
    """Wrap `inner(state, window, *extra) -> (state, metrics)` with the bad-step check
    (`max_update_ratio` 0: only non-finite steps are bad)."""
    def step(state: TrainState, window, *extra):
        new, metrics = inner(state, window, *extra)
        finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"]) & _all_finite(new.params)
        ratio = update_ratio(state.params, new.params)
        diverged = finite & (ratio > max_update_ratio) if max_update_ratio > 0 else jnp.array(False)
        ok = finite & ~diverged
        if skip:
            def keep(n, o):
                return jnp.where(ok, n, o)
            new = new.replace(params=jax.tree.map(keep, new.params, state.params),
                              opt_state=jax.tree.map(keep, new.opt_state, state.opt_state),
                              ema_params=jax.tree.map(keep, new.ema_params, state.ema_params))
        return new, {**metrics, "nonfinite": (~finite).astype(jnp.int32), "diverged": diverged.astype(jnp.int32),
                     "update_ratio": ratio}
    return step


def make_train_step(objective: Objective, ocfg: OptimizerConfig, ema_decay: float, state_like, mesh=None,
                    skip_nonfinite: bool = True, rules=sharding.DEFAULT_RULES, frozen=None,
                    max_update_ratio: float = 0.0):
    """`(step(state, window) -> (state, metrics), state_shardings)`, compiled on `mesh`
    (default: every local device on the data axes). The state is donated. `max_update_ratio`
    (0: off) is the guard's bound on ‖Δθ‖/‖θ‖; training passes `run.max_update_ratio`.

    `frozen()` gives a host-reward objective its fixed `(params, model_cfg)` (RPT's proxy),
    loaded once at the first step; by default, a copy of the params at that first step."""
    mesh = mesh if mesh is not None else make_mesh(MeshConfig())
    shardings = state_shardings(state_like, objective.model, mesh, rules)
    batch = sharding.batch_sharding(mesh, 2, rules)
    out = (shardings, sharding.replicated(mesh))
    if not isinstance(objective, HostRewardObjective):
        inner = functools.partial(objective_step, objective, ocfg, ema_decay)
        step = sharding.sharded_jit(guard(inner, skip_nonfinite, max_update_ratio), mesh, in_shardings=(shardings, batch),
                                    out_shardings=out, donate_argnums=(0,), rules=rules)
        return step, shardings
    rollout = sharding.sharded_jit(functools.partial(gather_planned, objective), mesh, rules=rules)
    update = sharding.sharded_jit(guard(functools.partial(learn, objective, ocfg, ema_decay), skip_nonfinite,
                                        max_update_ratio),
                                  mesh, out_shardings=out, donate_argnums=(0,), rules=rules)

    held = []

    def host_reward_step(state, window):
        if not held:
            held.append(frozen() if frozen else (jax.tree.map(jnp.copy, state.params), objective.model))
        seed = np.asarray(jax.random.key_data(state.rng)).ravel().tolist()
        experience, reward = objective.collect(lambda attempt, plan: rollout(state, window, attempt, plan), held[0],
                                               window, int(state.step), seed)
        return update(state, window, experience, jnp.asarray(reward))
    return host_reward_step, shardings
