"""The compiled steps the training loop calls: the train step (RLP or NTP) behind a
non-finite guard, and the held-out evaluation.

The guard runs inside the same jitted program: if the loss, the gradient norm or any
updated parameter is not finite, `run.nonfinite=skip` keeps the old params, optimizer
state and EMA (step and rng still advance, so the next batch gets fresh thoughts) and
reports `nonfinite=1`; `stop` lets the loop end the run before anything is saved.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from rlp_jax.model import transformer as model_lib
from rlp_jax.objectives import ntp
from rlp_jax.rollout import no_think as rewards
from rlp_jax.objectives import rlp
from rlp_jax.objectives import rpt
from rlp_jax.rollout import sampling
from rlp_jax.model import sharding
from rlp_jax.evaluation.evaluate import BUCKETS, top_k_entropy
from rlp_jax.model.config import ModelConfig
from rlp_jax.rollout.positions import choose_positions
from rlp_jax.objectives.config import OptimizerConfig, RLPConfig, RPTConfig


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def guard(inner, skip: bool):
    """Wrap `inner(state, window, *extra) -> (state, metrics)` with the non-finite check."""
    def step(state: rlp.TrainState, window, *extra):
        new, metrics = inner(state, window, *extra)
        ok = jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"]) & _all_finite(new.params)
        if skip:
            def keep(n, o):
                return jnp.where(ok, n, o)
            new = new.replace(params=jax.tree.map(keep, new.params, state.params),
                              opt_state=jax.tree.map(keep, new.opt_state, state.opt_state),
                              ema_params=jax.tree.map(keep, new.ema_params, state.ema_params))
        return new, {**metrics, "nonfinite": (~ok).astype(jnp.int32)}
    return step


def make_train_step(objective: str, cfg: ModelConfig, rcfg: RLPConfig, ocfg: OptimizerConfig, mesh,
                    state_like, skip_nonfinite: bool = True, rules=sharding.DEFAULT_RULES, tokenizer=None,
                    pcfg: RPTConfig | None = None):
    """`(step(state, window) -> (state, metrics), state_shardings)`, compiled on `mesh`.

    RLP and NTP steps are one jitted program. RPT needs the host between its rollout and
    its update (the reward compares decoded text), so its step is two jitted halves.
    """
    shardings = rlp.state_shardings(state_like, cfg, mesh, rules)
    batch = sharding.batch_sharding(mesh, 2, rules)
    if objective == "rpt":
        return _rpt_train_step(cfg, rpt.rpt_rollout_config(rcfg, tokenizer.eos_id), ocfg, mesh, shardings,
                               skip_nonfinite, rules, tokenizer, pcfg or RPTConfig()), shardings
    if objective == "rlp":
        inner = functools.partial(rlp.rlp_step, cfg=cfg, rcfg=rcfg, ocfg=ocfg)
    else:
        inner = functools.partial(ntp.ntp_step, cfg=cfg, ocfg=ocfg, ema_decay=rcfg.ema_decay)
    step = sharding.sharded_jit(guard(inner, skip_nonfinite), mesh, in_shardings=(shardings, batch),
                                out_shardings=(shardings, sharding.replicated(mesh)), donate_argnums=(0,),
                                rules=rules)
    return step, shardings


def _rpt_train_step(cfg, rcfg, ocfg, mesh, shardings, skip_nonfinite, rules, tokenizer, pcfg):
    rollout_jit = sharding.sharded_jit(
        functools.partial(rpt.rpt_rollout_fn, cfg=cfg, rcfg=rcfg, threshold=pcfg.entropy_threshold), mesh,
        rules=rules)
    update_jit = sharding.sharded_jit(
        guard(functools.partial(rpt.rpt_update_fn, cfg=cfg, rcfg=rcfg, ocfg=ocfg), skip_nonfinite), mesh,
        out_shardings=(shardings, sharding.replicated(mesh)), donate_argnums=(0,), rules=rules)

    def step(state, window):
        return rpt.rpt_step(state, window, tokenizer, cfg=cfg, rcfg=rcfg, ocfg=ocfg, pcfg=pcfg,
                            rollout=lambda *a, **_: rollout_jit(*a), update=lambda *a, **_: update_jit(*a))
    return step


def _bucket_means(prefix: str, values, entropy, valid) -> dict:
    """Mean of `values` over `valid` entries, overall and per difficulty bucket (RPT's nested
    easy / medium / hard by proxy top-16 entropy)."""
    out = {}
    for bucket, threshold in BUCKETS:
        sel = valid & (entropy > threshold)
        out[f"{prefix}/{bucket}"] = jnp.sum(jnp.where(sel, values, 0.0)) / jnp.maximum(jnp.sum(sel), 1)
    return out


def evaluate_window(params, ema_params, window, key, *, cfg: ModelConfig, rcfg: RLPConfig, objective: str):
    """Held-out metrics of one batch: NLL of θ and φ; no-think accuracy of θ by difficulty
    (the EMA teacher is the proxy); and (RLP) the information gain and thinking accuracy of
    θ's thoughts."""
    logits = model_lib.forward(params, cfg, window)[:, :-1]  # one pass per parameter set
    ema_logits = model_lib.forward(ema_params, cfg, window)[:, :-1]
    out = {"nll": ntp.nll_from_logits(logits, window), "ema_nll": ntp.nll_from_logits(ema_logits, window)}
    correct = jnp.argmax(logits, -1) == window[:, 1:]
    proxy_entropy = top_k_entropy(ema_logits)
    out.update(_bucket_means("acc_no_think", correct, proxy_entropy, jnp.ones_like(correct)))
    if objective == "rlp":
        key_positions, key_rollout = jax.random.split(key)
        s_ema_all, entropy = rewards.scores_from_logits(ema_logits, window)
        t = choose_positions(key_positions, entropy, rcfg)
        roll = sampling.rollout_thoughts(params, cfg, rcfg, window, t, key_rollout)
        gain = rewards.information_gain(roll.s_pred, rewards.at_branches(s_ema_all, roll.t))
        out.update(info_gain=jnp.mean(gain), info_gain_positive=jnp.mean((gain > 0).astype(jnp.float32)),
                   thought_len=jnp.mean(roll.lengths.astype(jnp.float32)))
        # Position t predicts x_t from x_<t: its proxy entropy is column t-1 of the shifted pass.
        at_t = jnp.take_along_axis(proxy_entropy, roll.t - 1, axis=1)
        think_correct = roll.prediction == jnp.take_along_axis(window, roll.t, axis=1)
        out.update(_bucket_means("acc_think", think_correct, at_t, jnp.ones_like(think_correct)))
    return out


def make_eval_step(objective: str, cfg: ModelConfig, rcfg: RLPConfig, mesh, param_shardings,
                   rules=sharding.DEFAULT_RULES):
    fn = functools.partial(evaluate_window, cfg=cfg, rcfg=rcfg, objective=objective)
    return sharding.sharded_jit(fn, mesh, in_shardings=(param_shardings, param_shardings,
                                                        sharding.batch_sharding(mesh, 2, rules),
                                                        sharding.replicated(mesh)),
                                out_shardings=sharding.replicated(mesh), rules=rules)
