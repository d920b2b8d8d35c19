"""What a run carries from step to step: parameters θ, optimizer state, the EMA teacher φ,
the step count and the RNG key, and (only with a KL term) the fixed reference θ_0. Every
objective uses this one state and its EMA rule."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct
from jax.sharding import Mesh

from rlp_jax.model import sharding
from rlp_jax.train.optimizer import OptimizerConfig, make_optimizer


class TrainState(struct.PyTreeNode):
    params: object
    opt_state: object
    ema_params: object  # φ; stands for θ until the first step has run (see `teacher_params`)
    step: jax.Array
    rng: jax.Array
    ref_params: object = None  # θ_0, the fixed KL reference (RLP paper §10); None without KL


def init_state(params, ocfg: OptimizerConfig, rng, reference: bool = False) -> TrainState:
    """A fresh state. φ starts as a copy of θ so that it has θ's shape and sharding in
    checkpoints; its value only counts from the first step on (`teacher_params`). With
    `reference` (kl_beta > 0) a copy of the initial θ is kept, never updated, as the KL
    reference."""
    return TrainState(params=params, opt_state=make_optimizer(ocfg).init(params),
                      ema_params=jax.tree.map(jnp.copy, params), step=jnp.zeros((), jnp.int32), rng=rng,
                      ref_params=jax.tree.map(jnp.copy, params) if reference else None)


def reference_params(state: TrainState):
    """The KL reference: the fixed θ_0 when the state keeps one, else the EMA teacher."""
    return teacher_params(state) if state.ref_params is None else state.ref_params


def teacher_params(state: TrainState):
    """The EMA teacher φ with the paper's lazy init: φ ← θ at the first batch.

    The one place the EMA is initialised. A `cond` (not an element-wise select over both
    trees every step) picks θ only at step 0, so a state whose params were replaced after
    `init_state` (weights loaded, a test's edits) still starts its teacher from θ.
    """
    return jax.lax.cond(state.step == 0, lambda: state.params, lambda: state.ema_params)


def ema_update(ema, params, decay: float):
    """φ ← τ φ + (1 − τ) θ, after every optimizer step."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)


def state_shardings(state: TrainState, cfg, mesh: Mesh, rules=sharding.DEFAULT_RULES):
    """Shardings of a `TrainState`: params, opt_state, EMA and reference alike; step and rng replicated."""
    params = sharding.param_shardings(cfg, mesh, rules)
    return TrainState(params=params, opt_state=sharding.shardings_like(state.opt_state, params, mesh),
                      ema_params=params, step=sharding.replicated(mesh), rng=sharding.replicated(mesh),
                      ref_params=None if state.ref_params is None else params)
