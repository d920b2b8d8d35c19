"""Thoughts made visible: a few of θ's thoughts on the first held-out batch, with their
reward, at every held-out eval of an RLP run (`RUN_DIR/thoughts.jsonl` and TensorBoard
text) and in `rlp-jax eval --show`.

They are computed as the held-out eval computes its thoughts (`heldout.evaluate_window`:
EMA teacher's no-think scores, positions, rollouts) with the key of its first batch, so
they are a reproducible look at what that eval scored. One branch per group comes first,
so that the examples differ.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp

from rlp_jax.errors import UserError, writing
from rlp_jax.objectives.rlp import information_gain
from rlp_jax.rollout import branches as br
from rlp_jax.rollout.no_think import no_think_scores
from rlp_jax.rollout.thoughts import think_at_eligible
from rlp_jax.rollout.window import as_window
from rlp_jax.train import thought_text

THOUGHTS_FILE = "thoughts.jsonl"
CONTEXT_TOKENS = 48  # of the context before x_t, shown with each example


def sample_thoughts(params, ema_params, window, key, *, cfg, rollout, count: int, context_len: int = CONTEXT_TOKENS):
    """`count` examples (arrays with a leading `[count]`) from one batch of windows (a
    `Window` or tokens `[B, T]`): context tail, thought, target, greedy prediction, S_pred,
    S_ema and reward. `valid` is False where a window had too few eligible positions."""
    w = as_window(window)
    s_ema, entropy = no_think_scores(ema_params, cfg, w)
    roll, valid = think_at_eligible(params, cfg, rollout, w, entropy, key)
    branches = valid.shape[1]
    # valid before invalid, a group's first branch before its others, then in order
    later = jnp.arange(branches) % rollout.group_size != 0
    rank = jnp.where(valid, 0, 2) + later[None, :].astype(jnp.int32)
    pick = jnp.argsort(rank.reshape(-1), stable=True)[:count]
    b, r = pick // branches, pick % branches
    at = lambda a: a[b, r]  # noqa: E731
    t_pick = at(roll.t)
    doc_start = t_pick - w.positions[b, t_pick]
    slots = t_pick[:, None] - context_len + jnp.arange(context_len)
    s_pred, s_base = at(roll.s_pred), at(br.at_branches(s_ema, roll.t))
    return {"t": t_pick, "valid": at(valid), "context": w.tokens[b[:, None], jnp.maximum(slots, 0)],
            "context_mask": slots >= doc_start[:, None], "thought": at(roll.thoughts), "length": at(roll.lengths),
            "target": w.tokens[b, t_pick], "prediction": at(roll.prediction), "s_pred": s_pred, "s_ema": s_base,
            "reward": information_gain(s_pred, s_base)}


sample_thoughts_jit = jax.jit(sample_thoughts, static_argnames=("cfg", "rollout", "count", "context_len"))


class HeldOutThoughts:
    """`(state, step, start, logger)`: the samples of one held-out eval, written by process 0
    (the logger's) to `thoughts.jsonl` and TensorBoard. On its first write in a session the
    file is cut back to the resume point `start` (rows of a crashed attempt's later steps,
    a half-written last line), as `metrics.jsonl` is; each row is one whole line."""

    def __init__(self, cfg, tokenizer, mesh, param_shardings):
        from rlp_jax.model import sharding

        self.cfg, self.tokenizer, self.mesh = cfg, tokenizer, mesh
        batch = cfg.data.batch_size * cfg.rollout.positions_per_window * cfg.rollout.group_size
        fn = functools.partial(sample_thoughts, cfg=cfg.model, rollout=cfg.rollout,
                               count=min(cfg.run.show_thoughts, batch))
        self._sample = sharding.sharded_jit(fn, mesh, in_shardings=(param_shardings, param_shardings,
                                                                    sharding.batch_sharding(mesh, 2),
                                                                    sharding.replicated(mesh)),
                                            out_shardings=sharding.replicated(mesh))
        self._window = None  # the first validation batch, read once
        self._opened = False
        self.path = os.path.join(cfg.run.run_dir, THOUGHTS_FILE)

    def __call__(self, state, step: int, start: int, logger) -> list[dict]:
        key = jax.random.fold_in(jax.random.key(self.cfg.run.seed + 7), 0)  # `heldout.evaluate`'s first batch
        out = jax.device_get(self._sample(state.params, state.ema_params, self._first_window(), key))
        rows = thought_text.rows(out, self.tokenizer, step)
        if logger.enabled:
            self._append(rows, start)
            logger.text("thoughts", "\n\n".join(_indented(thought_text.format_example(r)) for r in rows), step)
        return rows

    def _first_window(self):
        if self._window is None:
            from rlp_jax.train import data as train_data

            it = train_data.make_train_iterator(self.cfg, self.cfg.model.vocab_size, jax.process_index(),
                                                jax.process_count(), split="validation")
            try:
                self._window = train_data.global_window(next(it), self.mesh)
            except StopIteration:
                raise UserError("the validation split has no window for run.show_thoughts") from None
            finally:
                if hasattr(it, "close"):
                    it.close()
        return self._window

    def _append(self, rows: list[dict], start: int) -> None:
        import json

        from rlp_jax.train.metrics import truncate_after

        with writing(self.path):
            if not self._opened:
                truncate_after(self.path, start)
                self._opened = True
            with open(self.path, "a") as f:
                for row in rows:
                    f.write(json.dumps(row) + "\n")
                    f.flush()


def _indented(text: str) -> str:
    """A Markdown code block (TensorBoard renders text as Markdown)."""
    return "\n".join("    " + line for line in text.splitlines())


def for_run(cfg, tokenizer, mesh, param_shardings):
    """The samples of an RLP run with held-out evals and `run.show_thoughts` > 0, else a no-op."""
    run = cfg.run
    if run.objective != "rlp" or not run.eval_every or not run.show_thoughts:
        return lambda *_: []
    return HeldOutThoughts(cfg, tokenizer, mesh, param_shardings)
