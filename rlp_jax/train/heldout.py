"""Held-out metrics during training, compiled once: NLL of θ and φ, no-think accuracy of
θ by difficulty (the EMA teacher is the proxy), and for RLP the information gain and
thinking accuracy of θ's own thoughts."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from rlp_jax.model import sharding
from rlp_jax.model import transformer as model_lib
from rlp_jax.model.config import ModelConfig
from rlp_jax.model.vocab_scores import top_k_entropy
from rlp_jax.objectives.ntp import nll_from_logits
from rlp_jax.objectives.rlp import information_gain
from rlp_jax.rollout import branches as br
from rlp_jax.rollout.config import RolloutConfig
from rlp_jax.rollout.no_think import scores_from_logits
from rlp_jax.rollout.positions import BUCKETS, choose_positions, per_position
from rlp_jax.rollout.thoughts import rollout_thoughts


def bucket_means(prefix: str, values, entropy) -> dict:
    """Mean of `values` overall and per difficulty bucket (RPT's nested easy / medium /
    hard by proxy top-16 entropy); `values` and `entropy` share the same layout."""
    out = {}
    for bucket, threshold in BUCKETS:
        sel = entropy > threshold
        out[f"{prefix}/{bucket}"] = jnp.sum(jnp.where(sel, values, 0.0)) / jnp.maximum(jnp.sum(sel), 1)
    return out


def evaluate_window(params, ema_params, window, key, *, cfg: ModelConfig, rollout: RolloutConfig, thinking: bool):
    """Held-out metrics of one batch of windows `[B, T]` (one forward per parameter set)."""
    logits = model_lib.forward(params, cfg, window)[:, :-1]
    ema_logits = model_lib.forward(ema_params, cfg, window)[:, :-1]
    out = {"nll": nll_from_logits(logits, window), "ema_nll": nll_from_logits(ema_logits, window)}
    correct = jnp.argmax(logits, -1) == window[:, 1:]
    proxy_entropy = per_position(top_k_entropy(ema_logits))
    out.update(bucket_means("acc_no_think", correct, proxy_entropy[:, 1:]))
    if thinking:
        key_positions, key_rollout = jax.random.split(key)
        s_ema, entropy = scores_from_logits(ema_logits, window)
        t = choose_positions(key_positions, entropy, rollout)
        roll = rollout_thoughts(params, cfg, rollout, window, t, key_rollout)
        gain = information_gain(roll.s_pred, br.at_branches(s_ema, roll.t))
        out.update(info_gain=jnp.mean(gain), info_gain_positive=jnp.mean((gain > 0).astype(jnp.float32)),
                   thought_len=jnp.mean(roll.lengths.astype(jnp.float32)))
        think_correct = roll.prediction == br.at_branches(window, roll.t)
        out.update(bucket_means("acc_think", think_correct, br.at_branches(proxy_entropy, roll.t)))
    return out


def make_eval_step(cfg: ModelConfig, rollout: RolloutConfig, thinking: bool, mesh, param_shardings,
                   rules=sharding.DEFAULT_RULES):
    """`eval_step(params, ema_params, window, key) -> metrics`, compiled on `mesh`."""
    fn = functools.partial(evaluate_window, cfg=cfg, rollout=rollout, thinking=thinking)
    return sharding.sharded_jit(fn, mesh, in_shardings=(param_shardings, param_shardings,
                                                        sharding.batch_sharding(mesh, 2, rules),
                                                        sharding.replicated(mesh)),
                                out_shardings=sharding.replicated(mesh), rules=rules)
