"""Thought rollouts: G thoughts at each of K positions per window, prefix-shared.

One prefill per window; every branch then reads the window's cache through the mask
`slot < t`, same document as x_t (no copy of the window's keys/values), writes only its own open marker +
thought + close marker into a small per-branch cache, and the close marker is
teacher-forced before the true x_t is scored (S_pred). See docs/architecture.md.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from rlp_jax.model import transformer as model_lib
from rlp_jax.model.config import ModelConfig
from rlp_jax.rollout import branches as br
from rlp_jax.rollout.branches import prefill_window
from rlp_jax.rollout.config import RolloutConfig
from rlp_jax.rollout.positions import choose_positions_ok
from rlp_jax.rollout.sampling import DecodeState, Sampler, decode_loop
from rlp_jax.rollout.window import as_window


@struct.dataclass
class Rollout:
    """Thoughts of N = B·K·G branches laid out `[B, K·G]` (groups of G contiguous)."""

    t: jax.Array  # [B, R] thinking position of each branch
    thoughts: jax.Array  # [B, R, L] sampled tokens, 0 past `lengths`
    lengths: jax.Array  # [B, R] thought tokens (close marker excluded)
    logp: jax.Array  # [B, R, L] log π_θold of each thought token at the sampling temperature
    s_pred: jax.Array  # [B, R] log p_θold(x_t | x_<t, thought)
    prediction: jax.Array  # [B, R] greedy next token after the thought (thinking accuracy)


def thought_sampler(rcfg: RolloutConfig) -> Sampler:
    """Thoughts end at the first token of the close marker (not kept: it is teacher-forced),
    which is banned at the first step so that |c| >= 1 (Algorithm 1, line 7)."""
    return Sampler(rcfg.thought_len, rcfg.temperature, rcfg.top_k, rcfg.top_p, stop_id=rcfg.close_ids[0],
                   keep_stop=False, min_len=br.MIN_THOUGHT)


def finish_thoughts(params, cfg: ModelConfig, rcfg: RolloutConfig, window, t_branch, start, decoded: DecodeState,
                    prefix_fn) -> Rollout:
    """Teacher-force the close marker after each thought and score the true x_t (S_pred);
    `window` is the tokens `[B, T]`, `start` the branches' RoPE start (`br.rope_start`)."""
    close_tok, close_pos = br.close_marker(rcfg, start, decoded.lengths)
    logits, _ = model_lib.extend(params, cfg, close_tok, close_pos, decoded.cache,
                                 prefix=prefix_fn(close_tok.shape[-1]))
    final = jax.nn.log_softmax(logits[:, :, -1].astype(jnp.float32), axis=-1)
    s_pred = jnp.take_along_axis(final, br.at_branches(window, t_branch)[..., None], -1)[..., 0]
    return Rollout(t=t_branch, thoughts=decoded.tokens, lengths=decoded.lengths, logp=decoded.logp,
                   s_pred=s_pred, prediction=jnp.argmax(final, axis=-1).astype(jnp.int32))


def rollout_thoughts(params, cfg: ModelConfig, rcfg: RolloutConfig, window, t, key, active=None) -> Rollout:
    """G thoughts at each of the K positions `t [B, K]` of every window (a `Window`, or
    tokens `[B, T]`: one document per row).

    Groups not `active [B, K]` start finished: they sample nothing (length 0) and never keep
    the decode loop running (RPT's filtered or unfilled slots, positions with no context)."""
    return decode_thoughts(params, cfg, rcfg, window, t, key, prefill_window(params, cfg, window), active)


def decode_thoughts(params, cfg: ModelConfig, rcfg: RolloutConfig, window, t, key, window_cache,
                    active=None) -> Rollout:
    """The rollout after the prefill: open marker, thought loop, close marker and S_pred
    (its own function so that the decode alone can be timed)."""
    w = as_window(window)
    batch = w.shape[0]
    t_branch = br.branch_starts(t, rcfg.group_size)
    start = br.rope_start(w, t_branch)

    def prefix_fn(queries):
        return br.window_prefix(window_cache, w, t_branch, queries)

    cache = model_lib.init_cache(cfg, batch, rcfg.branch_len, branches=t_branch.shape[1])
    open_tok, open_pos = br.open_marker(rcfg, start)
    logits, cache = model_lib.extend(params, cfg, open_tok, open_pos, cache, prefix=prefix_fn(open_tok.shape[-1]))
    first = DecodeState.start(logits[:, :, -1], cache, key, rcfg.thought_len)
    if active is not None:
        first = first.replace(done=~br.branch_starts(active, rcfg.group_size))
    decoded = decode_loop(params, cfg, first, thought_sampler(rcfg), br.thought_start(rcfg, start),
                          prefix=prefix_fn(1))
    return finish_thoughts(params, cfg, rcfg, w.tokens, t_branch, start, decoded, prefix_fn)


def think_at_eligible(params, cfg: ModelConfig, rcfg: RolloutConfig, window, entropy, key):
    """`(rollout, valid [B, R])`: K eligible positions per window chosen from the no-think
    `entropy` (`positions.choose_positions_ok`), G thoughts at each; branches at slots a
    window could not fill are rolled out empty and not `valid`. What RLP's rollout, held-out
    eval and the sample thoughts all do, with the same split of `key`."""
    key_positions, key_rollout = jax.random.split(key)
    t, ok = choose_positions_ok(key_positions, entropy, rcfg, window)
    roll = rollout_thoughts(params, cfg, rcfg, window, t, key_rollout, active=ok)
    return roll, br.branch_starts(ok, rcfg.group_size)


rollout_thoughts_jit = jax.jit(rollout_thoughts, static_argnames=("cfg", "rcfg"))
