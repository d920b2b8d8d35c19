"""Thought branches over a shared window prefix: layout, masks, and teacher-forced scoring.

A window `x [B, T]` gets R = K·G branches per row; branch (b, r) thinks at position
`t[b, r]`, sees `x[b, :t]` through the window's prefill (DESIGN §3.3, no per-branch copy)
and lays out, at RoPE positions that continue from t,

    slots  0 .. o-1        open marker
           o .. o+L-1      thought tokens c_1..c_L (slots past the branch's length are invalid)
           o+L .. o+L+c-1  close marker (teacher-forced), positions continue after c_len

The logits at the last close slot score x_t (S_pred). `score_branches` is the gradient
pass: it prefills the window with the same params so gradients reach the window's K/V.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from rlp_jax.model import transformer as model_lib
from rlp_jax.model import vocab_scores
from rlp_jax.model.config import ModelConfig
from rlp_jax.objectives.config import RLPConfig


@struct.dataclass
class BranchScores:
    """Per-branch outputs of a teacher-forced pass (all [B, R] or [B, R, L])."""

    thought_logp: jax.Array  # log π(c_u | ...) at the sampling temperature, 0 on masked slots
    thought_mask: jax.Array  # bool, u < length
    entropy: jax.Array  # entropy of the tempered policy at each thought slot
    s_pred: jax.Array  # log p(x_t | x_<t, c) at temperature 1


def branch_starts(t: jax.Array, group_size: int) -> jax.Array:
    """Positions `[B, K]` → per-branch thinking positions `[B, K·G]` (groups contiguous)."""
    return jnp.repeat(t, group_size, axis=1)


def window_mask(t_branch: jax.Array, window_len: int, queries: int) -> jax.Array:
    """Mask `[B, R, queries, T]`: branch r may read window slots `< t[b, r]`."""
    visible = jnp.arange(window_len) < t_branch[..., None, None]
    return jnp.broadcast_to(visible, t_branch.shape + (queries, window_len))


def targets_at(window: jax.Array, t_branch: jax.Array) -> jax.Array:
    """The true next token x_t of every branch, `[B, R]`."""
    return jnp.take_along_axis(window, t_branch, axis=1)


def layout(rcfg: RLPConfig, t_branch, thoughts, lengths):
    """Tokens, RoPE positions and validity `[B, R, o+L+c]` of the teacher-forced branches."""
    o, c, L = len(rcfg.open_ids), len(rcfg.close_ids), rcfg.thought_len
    shape = t_branch.shape
    open_tok = jnp.broadcast_to(jnp.asarray(rcfg.open_ids, jnp.int32), shape + (o,))
    close_tok = jnp.broadcast_to(jnp.asarray(rcfg.close_ids, jnp.int32), shape + (c,))
    tokens = jnp.concatenate([open_tok, thoughts.astype(jnp.int32), close_tok], axis=-1)
    t = t_branch[..., None]
    u = jnp.arange(L)
    positions = jnp.concatenate([
        t + jnp.arange(o), t + o + u, t + o + lengths[..., None] + jnp.arange(c)], axis=-1)
    valid = jnp.concatenate([
        jnp.ones(shape + (o,), bool), u < lengths[..., None], jnp.ones(shape + (c,), bool)], axis=-1)
    return tokens, positions.astype(jnp.int32), valid


def scores_from_hidden(params, cfg: ModelConfig, rcfg: RLPConfig, hidden, thoughts, lengths,
                       targets) -> BranchScores:
    """Thought log-probs, entropies and S_pred from teacher-forced hidden states `[B,R,S,D]`."""
    o, c, L = len(rcfg.open_ids), len(rcfg.close_ids), rcfg.thought_len
    mask = jnp.arange(L) < lengths[..., None]
    thought_logp, entropy = vocab_scores.target_scores(
        params, cfg, hidden[..., o - 1 : o - 1 + L, :], thoughts, rcfg.temperature)
    s_pred, _ = vocab_scores.target_scores(params, cfg, hidden[..., o + L + c - 1, :], targets)
    return BranchScores(thought_logp=jnp.where(mask, thought_logp, 0.0), thought_mask=mask,
                        entropy=jnp.where(mask, entropy, 0.0), s_pred=s_pred)


def score_branches(params, cfg: ModelConfig, rcfg: RLPConfig, window, t_branch, thoughts,
                   lengths) -> BranchScores:
    """Teacher-forced pass over all branches: one window prefill + one `extend` with prefix."""
    batch, window_len = window.shape
    cache = model_lib.init_cache(cfg, batch, window_len)
    _, cache = model_lib.prefill(params, cfg, window, cache)
    tokens, positions, valid = layout(rcfg, t_branch, thoughts, lengths)
    prefix = model_lib.prefix_from_cache(cache, window_mask(t_branch, window_len, tokens.shape[-1]))
    hidden, _ = model_lib.extend(params, cfg, tokens, positions, prefix=prefix, valid=valid, head=False)
    return scores_from_hidden(params, cfg, rcfg, hidden, thoughts, lengths, targets_at(window, t_branch))
