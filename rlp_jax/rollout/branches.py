"""Thought branches over a shared window prefix: layout, masks, and teacher-forced scoring.

A window `x [B, T]` gets R = K·G branches per row; branch (b, r) thinks at slot
`t[b, r]`, sees the slots before t of x_t's own document through the window's prefill (no
per-branch copy; see docs/architecture.md, "Prefix-shared branch attention") and lays out,
at RoPE positions that continue from x_t's position in its document (`start`),

    slots  0 .. o-1        open marker
           o .. o+L-1      thought tokens c_1..c_L (slots past the branch's length are invalid)
           o+L .. o+L+c-1  close marker (teacher-forced), positions continue after c_len

The logits at the last close slot score x_t (S_pred). This layout is written once, here
(`open_marker`, `close_marker`, `layout`), and read by the sampler, the gradient pass and
the references. `score_branches` is the gradient pass: it prefills the window with the
same params so gradients reach the window's K/V.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from rlp_jax.model import transformer as model_lib
from rlp_jax.model import vocab_scores
from rlp_jax.model.config import ModelConfig
from rlp_jax.rollout.config import RolloutConfig
from rlp_jax.rollout.window import as_window, prefix_visibility


MIN_THOUGHT = 1  # |c| >= 1: the close marker's first token is banned at the first thought slot


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


def at_branches(per_position: jax.Array, t_branch: jax.Array) -> jax.Array:
    """Gather a `[B, T]` per-position array at each branch's position: `[B, R]`.

    With the window itself this is the target x_t of every branch; with a no-think score
    or entropy (column t describes predicting x_t from x_<t) it is that value at t.
    """
    return jnp.take_along_axis(per_position, t_branch, axis=1)


def rope_start(window, t_branch) -> jax.Array:
    """RoPE position `[B, R]` of each branch's open marker: that of x_t in its document."""
    return at_branches(as_window(window).positions, t_branch)


def _marker(ids: tuple[int, ...], first_pos: jax.Array):
    """Tokens and RoPE positions `[B, R, len(ids)]` of a marker starting at `first_pos [B, R]`."""
    tokens = jnp.broadcast_to(jnp.asarray(ids, jnp.int32), first_pos.shape + (len(ids),))
    return tokens, (first_pos[..., None] + jnp.arange(len(ids))).astype(jnp.int32)


def open_marker(rcfg: RolloutConfig, start):
    """The open marker, at RoPE positions start, start+1, ... (`rope_start`)."""
    return _marker(rcfg.open_ids, start)


def thought_start(rcfg: RolloutConfig, start):
    """RoPE position of each branch's first thought token."""
    return start + len(rcfg.open_ids)


def close_marker(rcfg: RolloutConfig, start, lengths):
    """The close marker, right after each branch's `lengths` thought tokens."""
    return _marker(rcfg.close_ids, thought_start(rcfg, start) + lengths)


def layout(rcfg: RolloutConfig, start, thoughts, lengths):
    """Tokens, RoPE positions and validity `[B, R, o+L+c]` of the teacher-forced branches."""
    open_tok, open_pos = open_marker(rcfg, start)
    close_tok, close_pos = close_marker(rcfg, start, lengths)
    u = jnp.arange(rcfg.thought_len)
    tokens = jnp.concatenate([open_tok, thoughts.astype(jnp.int32), close_tok], axis=-1)
    positions = jnp.concatenate([open_pos, thought_start(rcfg, start)[..., None] + u, close_pos], axis=-1)
    valid = jnp.concatenate([jnp.ones(open_tok.shape, bool), u < lengths[..., None],
                             jnp.ones(close_tok.shape, bool)], axis=-1)
    return tokens, positions.astype(jnp.int32), valid


def scores_from_hidden(params, cfg: ModelConfig, rcfg: RolloutConfig, hidden, thoughts, lengths,
                       targets) -> BranchScores:
    """Thought log-probs, entropies and S_pred from teacher-forced hidden states `[B,R,S,D]`."""
    o, c, L = len(rcfg.open_ids), len(rcfg.close_ids), rcfg.thought_len
    mask = jnp.arange(L) < lengths[..., None]
    early = jnp.broadcast_to(jnp.arange(L) < MIN_THOUGHT, thoughts.shape)  # close token banned there
    thought_logp, entropy = vocab_scores.target_scores(params, cfg, hidden[..., o - 1 : o - 1 + L, :], thoughts,
                                                       rcfg.temperature, banned=rcfg.close_ids[0], banned_at=early)
    s_pred, _ = vocab_scores.target_scores(params, cfg, hidden[..., o + L + c - 1, :], targets)
    return BranchScores(thought_logp=jnp.where(mask, thought_logp, 0.0), thought_mask=mask,
                        entropy=jnp.where(mask, entropy, 0.0), s_pred=s_pred)


def prefill_window(params, cfg: ModelConfig, window) -> model_lib.KVCache:
    """The one prefill of the windows that every branch reads through its mask: each
    document attends within itself, at its own RoPE positions."""
    w = as_window(window)
    batch, window_len = w.shape
    _, cache = model_lib.prefill(params, cfg, w.tokens, model_lib.init_cache(cfg, batch, window_len),
                                 positions=w.positions, segment_ids=w.segment_ids, head=False)
    return cache


def window_prefix(window_cache: model_lib.KVCache, window, t_branch, queries: int) -> model_lib.SharedPrefix:
    """The prefilled window as the prefix branch r reads: x_t's document before t."""
    return model_lib.prefix_from_cache(window_cache, prefix_visibility(as_window(window), t_branch, queries))


def score_branches(params, cfg: ModelConfig, rcfg: RolloutConfig, window, t_branch, thoughts,
                   lengths) -> BranchScores:
    """Teacher-forced pass over all branches: one window prefill + one `extend` with prefix."""
    w = as_window(window)
    tokens, positions, valid = layout(rcfg, rope_start(w, t_branch), thoughts, lengths)
    prefix = window_prefix(prefill_window(params, cfg, w), w, t_branch, tokens.shape[-1])
    hidden, _ = model_lib.extend(params, cfg, tokens, positions, prefix=prefix, valid=valid, head=False)
    return scores_from_hidden(params, cfg, rcfg, hidden, thoughts, lengths, at_branches(w.tokens, t_branch))
