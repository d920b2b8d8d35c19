"""Slow, obviously-correct references for thought rollouts and scoring (tests, benchmarks).

Nothing here shares a window's keys/values between branches: every branch re-encodes its
own prefix `x_<t` (+ thought). The fast paths in `sampling` and `branches` must agree with
these to float32 rounding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rlp_jax.rollout import branches as br
from rlp_jax.model import transformer as model_lib
from rlp_jax.model import vocab_scores
from rlp_jax.model.config import ModelConfig
from rlp_jax.rollout.config import RolloutConfig
from rlp_jax.rollout.sampling import DecodeState, decode_loop
from rlp_jax.rollout.thoughts import Rollout, finish_thoughts, thought_sampler


def reference_score_branches(params, cfg: ModelConfig, rcfg: RolloutConfig, window, t_branch, thoughts,
                             lengths) -> br.BranchScores:
    """Score each branch by a full `forward` over `x_<t, open, thought, close` on its own.

    A Python loop over branches, no masks: each sequence is right-padded to one length
    (harmless for a causal model, and it keeps to one compilation). Slow, differentiable.
    """
    o, c, L = len(rcfg.open_ids), len(rcfg.close_ids), rcfg.thought_len
    window_np, t_np, len_np = np.asarray(window), np.asarray(t_branch), np.asarray(lengths)
    batch, branches = t_np.shape
    padded_len = window.shape[1] + rcfg.branch_len
    logp_rows, ent_rows, pred_rows = [], [], []
    for b in range(batch):
        logp_b, ent_b, pred_b = [], [], []
        for r in range(branches):
            t, n = int(t_np[b, r]), int(len_np[b, r])
            seq = jnp.concatenate([jnp.asarray(window[b, :t]), jnp.asarray(rcfg.open_ids, jnp.int32),
                                   thoughts[b, r, :n].astype(jnp.int32),
                                   jnp.asarray(rcfg.close_ids, jnp.int32)])
            seq = jnp.pad(seq, (0, padded_len - seq.shape[0]))
            logits = model_lib.forward_compiled(params, cfg, seq[None])[0]
            rows = logits[t + o - 1 : t + o - 1 + n]
            first = jnp.arange(n) < br.MIN_THOUGHT  # the close token cannot end an empty thought
            tl = vocab_scores.tempered_logp(vocab_scores.ban_token(rows, rcfg.close_ids[0], first),
                                            rcfg.temperature)
            lp = jnp.take_along_axis(tl, thoughts[b, r, :n, None].astype(jnp.int32), -1)[:, 0]
            ent = -jnp.sum(jnp.exp(tl) * tl, axis=-1)
            pad = jnp.zeros((L - n,))
            logp_b.append(jnp.concatenate([lp, pad]))
            ent_b.append(jnp.concatenate([ent, pad]))
            final = jax.nn.log_softmax(logits[t + o + n + c - 1])
            pred_b.append(final[int(window_np[b, t])])
        logp_rows.append(jnp.stack(logp_b))
        ent_rows.append(jnp.stack(ent_b))
        pred_rows.append(jnp.stack(pred_b))
    mask = jnp.arange(L) < jnp.asarray(lengths)[..., None]
    return br.BranchScores(thought_logp=jnp.stack(logp_rows), thought_mask=mask,
                           entropy=jnp.stack(ent_rows), s_pred=jnp.stack(pred_rows))


def reference_rollout(params, cfg: ModelConfig, rcfg: RolloutConfig, window, t, key) -> Rollout:
    """Thought rollouts that re-encode `x_<t + open` separately for each of the N branches.

    Each branch gets its own left-padded prompt and full-length KV cache (the naive
    O(N·T) prefill that the shared prefix avoids), then the same decode loop and sampling keys as
    `rollout_thoughts`, so a fixed key yields the same thoughts. Jittable.
    """
    batch, window_len = window.shape
    o = len(rcfg.open_ids)
    t_branch = br.branch_starts(t, rcfg.group_size)
    branches = t_branch.shape[1]
    n = batch * branches
    t_flat = t_branch.reshape(n)
    rows = jnp.repeat(jnp.arange(batch), branches)
    prompt_len = window_len + o
    idx = jnp.arange(prompt_len)[None, :] - (prompt_len - (t_flat[:, None] + o))  # content index
    from_window = window[rows[:, None], jnp.clip(idx, 0, window_len - 1)]
    open_ids = jnp.asarray(rcfg.open_ids, jnp.int32)
    from_open = open_ids[jnp.clip(idx - t_flat[:, None], 0, o - 1)]
    prompt = jnp.where(idx < t_flat[:, None], from_window, from_open)
    valid = idx >= 0
    prompt = jnp.where(valid, prompt, 0)
    positions = jnp.maximum(idx, 0).astype(jnp.int32)
    cache = model_lib.init_cache(cfg, n, prompt_len + rcfg.thought_len + len(rcfg.close_ids))
    logits, cache = model_lib.prefill(params, cfg, prompt, cache, positions, valid)
    decoded = decode_loop(params, cfg, DecodeState.start(logits[:, None, -1], cache, key, rcfg.thought_len),
                          thought_sampler(rcfg), (t_flat + o)[:, None])
    roll = finish_thoughts(params, cfg, rcfg, window[rows], t_flat[:, None], t_flat[:, None], decoded, lambda q: None)
    return jax.tree.map(lambda a: a.reshape((batch, branches) + a.shape[2:]), roll)


reference_rollout_jit = jax.jit(reference_rollout, static_argnames=("cfg", "rcfg"))
