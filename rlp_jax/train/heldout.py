"""Held-out metrics during training, compiled once: NLL of θ and φ, no-think accuracy of
θ by difficulty (the EMA teacher is the proxy), and for RLP the information gain and
thinking accuracy of θ's own thoughts, beside θ's no-think accuracy at the same positions."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from rlp_jax.model import sharding
from rlp_jax.model.config import ModelConfig
from rlp_jax.model.vocab_scores import top_k_entropy
from rlp_jax.objectives.ntp import nll_from_logits, nll_targets
from rlp_jax.objectives.policy_loss import valid_mean
from rlp_jax.objectives.rlp import information_gain
from rlp_jax.rollout import branches as br
from rlp_jax.rollout.config import RolloutConfig
from rlp_jax.rollout.no_think import scores_from_logits, window_forward
from rlp_jax.rollout.positions import BUCKETS, per_position
from rlp_jax.rollout.thoughts import think_at_eligible
from rlp_jax.rollout.window import as_window


def bucket_means(prefix: str, values, entropy, valid=None) -> dict:
    """Mean of `values` overall and per difficulty bucket (RPT's nested easy / medium /
    hard by proxy top-16 entropy) over the entries marked `valid` (default all); `values`,
    `entropy` and `valid` share the same layout."""
    out = {}
    for bucket, threshold in BUCKETS:
        sel = entropy > threshold
        if valid is not None:
            sel = sel & valid
        out[f"{prefix}/{bucket}"] = jnp.sum(jnp.where(sel, values, 0.0)) / jnp.maximum(jnp.sum(sel), 1)
    return out


def evaluate_window(params, ema_params, window, key, *, cfg: ModelConfig, rollout: RolloutConfig, thinking: bool):
    """Held-out metrics of one batch of windows (a `Window`, or tokens `[B, T]`), one forward
    per parameter set. Packed documents are seen alone, by the no-think and the thinking
    passes alike; only real targets within a document count. `acc_think` and
    `acc_no_think_at_thoughts` are taken at the same positions."""
    window = as_window(window)
    logits = window_forward(params, cfg, window)[:, :-1]
    ema_logits = window_forward(ema_params, cfg, window)[:, :-1]
    out = {"nll": nll_from_logits(logits, window), "ema_nll": nll_from_logits(ema_logits, window)}
    correct = jnp.argmax(logits, -1) == window.tokens[:, 1:]
    proxy_entropy = per_position(top_k_entropy(ema_logits))
    out.update(bucket_means("acc_no_think", correct, proxy_entropy[:, 1:], nll_targets(window)))
    if thinking:
        s_ema, entropy = scores_from_logits(ema_logits, window)
        roll, valid = think_at_eligible(params, cfg, rollout, window, entropy, key)
        gain = information_gain(roll.s_pred, br.at_branches(s_ema, roll.t))
        out.update(info_gain=valid_mean(gain, valid), info_gain_positive=valid_mean(gain > 0, valid),
                   thought_len=valid_mean(roll.lengths, valid))
        think_correct = roll.prediction == br.at_branches(window.tokens, roll.t)
        at_t = br.at_branches(proxy_entropy, roll.t)
        out.update(bucket_means("acc_think", think_correct, at_t, valid))
        no_think_at_t = br.at_branches(per_position(correct), roll.t)
        out.update(bucket_means("acc_no_think_at_thoughts", no_think_at_t, at_t, valid))
    return out


def make_eval_step(cfg: ModelConfig, rollout: RolloutConfig, thinking: bool, mesh, param_shardings,
                   rules=sharding.DEFAULT_RULES):
    """`eval_step(params, ema_params, window, key) -> metrics`, compiled on `mesh`."""
    fn = functools.partial(evaluate_window, cfg=cfg, rollout=rollout, thinking=thinking)
    return sharding.sharded_jit(fn, mesh, in_shardings=(param_shardings, param_shardings,
                                                        sharding.batch_sharding(mesh, 2, rules),
                                                        sharding.replicated(mesh)),
                                out_shardings=sharding.replicated(mesh), rules=rules)


def evaluate(cfg, eval_step, state, mesh, vocab_size: int) -> dict:
    """Mean held-out metrics over `run.eval_batches` validation batches (fixed eval key)."""
    import numpy as np

    from rlp_jax.errors import UserError
    from rlp_jax.train import data as train_data

    it = train_data.make_train_iterator(cfg, vocab_size, jax.process_index(), jax.process_count(),
                                        split="validation")
    key = jax.random.key(cfg.run.seed + 7)
    totals: dict[str, float] = {}
    try:
        for i in range(cfg.run.eval_batches):
            window = train_data.global_window(next(it), mesh)
            out = jax.device_get(eval_step(state.params, state.ema_params, window, jax.random.fold_in(key, i)))
            for k, v in out.items():
                totals[k] = totals.get(k, 0.0) + float(v) / cfg.run.eval_batches
    except StopIteration:
        raise UserError("the validation split has too few windows for run.eval_batches") from None
    finally:
        if hasattr(it, "close"):
            it.close()
    return {k: float(np.float32(v)) for k, v in totals.items()}
