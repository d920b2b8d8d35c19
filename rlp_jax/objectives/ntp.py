"""The next-token baseline (DESIGN §2.3): plain teacher-forced cross-entropy on the same
windows, the same `TrainState`, optimizer and EMA schedule as RLP, so the two objectives
are compared with everything else held equal."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from rlp_jax.model import transformer as model_lib
from rlp_jax.model import vocab_scores
from rlp_jax.model.config import ModelConfig
from rlp_jax.objectives.rlp import TrainState, ema_update, make_optimizer, teacher_params
from rlp_jax.objectives.config import OptimizerConfig

PAD_ID = 0


def ntp_loss(params, cfg: ModelConfig, window):
    """Mean −log p(x_t | x_<t) over non-padding targets of windows `[B, T]`."""
    hidden = model_lib.forward(params, cfg, window, head=False)[:, :-1]
    logp, _ = vocab_scores.target_scores(params, cfg, hidden, window[:, 1:])
    return _masked_nll(logp, window)


def nll_from_logits(logits, window):
    """`ntp_loss` given the teacher-forced logits `[B, T-1, V]` (reuse a forward pass)."""
    return _masked_nll(vocab_scores.logit_scores(logits, window[:, 1:])[0], window)


def _masked_nll(target_logp, window):
    """Mean −log p over the targets `window[:, 1:]` that are not padding."""
    mask = (window[:, 1:] != PAD_ID).astype(jnp.float32)
    return -jnp.sum(target_logp * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def ntp_step(state: TrainState, window, *, cfg: ModelConfig, ocfg: OptimizerConfig, ema_decay: float):
    """One optimizer step on the NTP loss, then the EMA step; returns `(new_state, metrics)`."""
    ema = teacher_params(state)
    loss, grads = jax.value_and_grad(ntp_loss)(state.params, cfg, window)
    updates, opt_state = make_optimizer(ocfg).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    rng, _ = jax.random.split(state.rng)
    new_state = TrainState(params=params, opt_state=opt_state, ema_params=ema_update(ema, params, ema_decay),
                           step=state.step + 1, rng=rng)
    return new_state, {"loss": loss, "nll": loss, "grad_norm": optax.tree.norm(grads)}
