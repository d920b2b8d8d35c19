"""Evaluation: no-think and thinking next-token accuracy, NLL, information gain, by difficulty.

Difficulty follows RPT: a proxy model's entropy over its top-16 next-token probabilities
(renormalised); buckets are nested, easy > 0.5, medium > 1.0, hard > 1.5 nats. The proxy
is the evaluated model itself unless another one is given.

No-think figures cover every valid target in the windows. Thinking figures cover K
positions per window: G thoughts each (prefix-shared rollouts, as in training), then the
greedy prediction after the close marker; information gain is S_pred − S_no-think of the
same parameters. With `reasoning` (RPT's view, `reasoning.py`), the same positions also get
completions whose boxed answer is scored by prefix match: reasoning accuracy.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from rlp_jax import progress
from rlp_jax.model.config import ModelConfig
from rlp_jax.model.vocab_scores import top_k_entropy
from rlp_jax.rollout import branches as br
from rlp_jax.rollout.config import RolloutConfig
from rlp_jax.rollout.no_think import window_forward
from rlp_jax.rollout.positions import BUCKETS, per_position
from rlp_jax.rollout.thoughts import think_at_eligible
from rlp_jax.rollout.window import Window, from_batch, target_mask


@functools.partial(jax.jit, static_argnames=("cfg", "proxy_cfg"))
def no_think_pass(params, cfg: ModelConfig, proxy_params, proxy_cfg: ModelConfig, window: Window):
    """Per-target `[B, T]` arrays: correct, log-prob, proxy entropy (column 0 unused)."""
    logits = window_forward(params, cfg, window)[:, :-1]
    logp = jax.nn.log_softmax(logits, axis=-1)
    targets = window.tokens[:, 1:]
    score = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    correct = jnp.argmax(logits, axis=-1) == targets
    proxy_logits = window_forward(proxy_params, proxy_cfg, window)[:, :-1]
    return per_position(correct), per_position(score), per_position(top_k_entropy(proxy_logits))


@functools.partial(jax.jit, static_argnames=("cfg", "rcfg"))
def thinking_pass(params, cfg: ModelConfig, rcfg: RolloutConfig, window: Window, key):
    """Rollouts at K uniformly drawn eligible positions, under the same document masks as
    the no-think pass: `(t [B,K], ok [B,K], correct [B,K,G], s_pred [B,K,G])`."""
    rcfg = rcfg.replace(position_strategy="uniform")
    roll, valid = think_at_eligible(params, cfg, rcfg, window, jnp.zeros(window.shape), key)
    targets = br.at_branches(window.tokens, roll.t)
    g = rcfg.group_size
    shape = roll.t.shape[:1] + (-1, g)
    return (roll.t[:, ::g], valid[:, ::g], (roll.prediction == targets).reshape(shape),
            roll.s_pred.reshape(shape))


@dataclasses.dataclass
class _Tally:
    """Running sums per bucket."""

    sums: dict = dataclasses.field(default_factory=dict)

    def add(self, bucket: str, name: str, values: np.ndarray) -> None:
        total, count = self.sums.get((bucket, name), (0.0, 0))
        self.sums[(bucket, name)] = (total + float(np.sum(values)), count + int(np.size(values)))

    def mean(self, bucket: str, name: str):
        total, count = self.sums.get((bucket, name), (0.0, 0))
        return (total / count if count else None), count


def evaluate_batches(params, cfg: ModelConfig, batches, rcfg: RolloutConfig | None = None,
                     proxy=None, seed: int = 0, reasoning=None, total: int | None = None) -> dict:
    """Evaluate over an iterable of batches (dicts of `tokens`, `segment_ids`, `positions`).

    `proxy` is `(proxy_params, proxy_cfg)` (default: the evaluated model). Thinking figures
    are computed when `rcfg` (with markers set) is given, reasoning accuracy when also a
    `reasoning.Reasoning` is. Returns the `eval.json` dict. `total` (batches expected, at most)
    sizes the progress bar.
    """
    proxy_params, proxy_cfg = proxy if proxy is not None else (params, cfg)
    tally = _Tally()
    key = jax.random.key(seed)
    bar = progress.bar(batches, desc="eval", total=total, unit="batch")
    for batch in bar:
        window = jax.tree.map(jnp.asarray, from_batch(batch))
        bar.set_postfix_str("no-think pass")
        correct, score, entropy = map(np.asarray, no_think_pass(params, cfg, proxy_params, proxy_cfg, window))
        valid = np.asarray(target_mask(window))
        for bucket, threshold in BUCKETS:
            sel = valid & (entropy > threshold)
            tally.add(bucket, "no_think_accuracy", correct[sel])
            tally.add(bucket, "nll", -score[sel])
        if rcfg is None:
            continue
        key, sub = jax.random.split(key)
        bar.set_postfix_str("thinking rollouts" if reasoning is None else "thinking and reasoning rollouts")
        t, ok, think_correct, s_pred = map(np.asarray, thinking_pass(params, cfg, rcfg, window, sub))
        reasoned = None if reasoning is None else reasoning.correct(params, cfg, window, jnp.asarray(t),
                                                                     jax.random.fold_in(sub, 1))
        rows = np.arange(t.shape[0])[:, None]
        at_t = lambda a: a[rows, t]  # noqa: E731
        gain = s_pred - at_t(score)[..., None]
        for bucket, threshold in BUCKETS:
            sel = ok & (at_t(entropy) > threshold)  # [B, K]
            tally.add(bucket, "thinking_accuracy", think_correct[sel])
            tally.add(bucket, "information_gain", gain[sel])
            tally.add(bucket, "no_think_accuracy_at_thought_positions", at_t(correct)[sel])
            if reasoned is not None:
                tally.add(bucket, "reasoning_accuracy", reasoned[sel])
    return _summarise(tally, thinking=rcfg is not None, reasoning=reasoning is not None)


def _summarise(tally: _Tally, thinking: bool, reasoning: bool = False) -> dict:
    names = ["no_think_accuracy", "nll"]
    if thinking:
        names += ["thinking_accuracy", "no_think_accuracy_at_thought_positions", "information_gain"]
    if reasoning:
        names += ["reasoning_accuracy"]
    result = {}
    for bucket, threshold in BUCKETS:
        entry = {"min_entropy": None if threshold == -math.inf else threshold}
        for name in names:
            value, count = tally.mean(bucket, name)
            entry[name] = value
            entry[f"{name}_count"] = count
        if entry["nll"] is not None:
            entry["perplexity"] = math.exp(entry["nll"])
        result[bucket] = entry
    return result


def plot_eval(result: dict, path: str, title: str = "") -> None:
    """Bar chart of accuracy per difficulty bucket (no-think vs thinking)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buckets = [name for name, _ in BUCKETS]
    series = [("no_think_accuracy", "no-think")]
    if result["all"].get("thinking_accuracy") is not None:
        series.append(("thinking_accuracy", "thinking"))
    if result["all"].get("reasoning_accuracy") is not None:
        series.append(("reasoning_accuracy", "reasoning (RPT)"))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / len(series)
    for i, (key, label) in enumerate(series):
        values = [result[b].get(key) or 0.0 for b in buckets]
        ax.bar(np.arange(len(buckets)) + i * width, values, width, label=label)
    ax.set_xticks(np.arange(len(buckets)) + width * (len(series) - 1) / 2, buckets)
    ax.set_ylabel("next-token accuracy")
    ax.set_title(title or "accuracy by difficulty (proxy top-16 entropy)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
