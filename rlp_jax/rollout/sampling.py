"""Token sampling: temperature / top-k / top-p, one decode loop, and its two users.

`decode_loop` is a `lax.while_loop` of one-token `extend`s over [B, R] branches with a
per-branch KV cache and an optional shared prefix; branches stop independently.

* `generate`: prompt → continuation (R = 1, no prefix; the stop token is kept).
* `rollout_thoughts`: RLP thoughts (DESIGN §3.3): one prefill per window, then K·G
  branches per window decode against the window's cache through a per-branch mask (no
  copy of the window's keys/values); the close marker is teacher-forced and x_t scored.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from flax import struct

from rlp_jax.rollout import branches as br
from rlp_jax.model import transformer as model_lib
from rlp_jax.model import vocab_scores
from rlp_jax.model.config import ModelConfig
from rlp_jax.objectives.config import RLPConfig


def sample_logits(logits, key, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0):
    """Sample ids from `logits` [..., V]; temperature 0 means greedy."""
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = filter_logits(logits.astype(jnp.float32) / temperature, top_k, top_p)
    return categorical(key, logits)


SAMPLE_BLOCK = 256


def categorical(key, logits):
    """One id per row of `logits` [..., V], drawn with probability softmax(logits).

    Exact, in two stages: a block of `SAMPLE_BLOCK` ids by its probability mass, then an
    id inside that block. Gumbel-max (`jax.random.categorical`) draws and takes two logs
    of V random numbers per row; this draws V/256 + 256, which on CPU makes sampling
    16×49152 logits about 16× cheaper (it was an eighth of a SmolLM2 decode step).
    """
    *lead, vocab = logits.shape
    block = min(SAMPLE_BLOCK, vocab)
    n_blocks = -(-vocab // block)
    pad = [(0, 0)] * len(lead) + [(0, n_blocks * block - vocab)]
    blocks = jnp.pad(logits, pad, constant_values=-jnp.inf).reshape(*lead, n_blocks, block)
    weights = jnp.exp(blocks - jnp.max(logits, axis=-1)[..., None, None])
    key_block, key_member = jax.random.split(key)
    chosen = jax.random.categorical(key_block, jnp.log(jnp.sum(weights, axis=-1)), axis=-1)
    members = jnp.take_along_axis(weights, chosen[..., None, None], axis=-2)[..., 0, :]
    member = jax.random.categorical(key_member, jnp.log(members), axis=-1)
    return (chosen * block + member).astype(jnp.int32)


def filter_logits(logits, top_k: int = 0, top_p: float = 1.0):
    """Set to -inf every logit outside the top k, then outside the nucleus of mass top_p.

    No sort of the vocabulary (a sort of [rows, 150K] per decode step costs more than the
    model on CPU): the k-th largest value is the min of `lax.top_k` (reading element k-1
    of it instead makes XLA rewrite the top-k into a full sort), and the nucleus cutoff
    is found by bisection on the float bits (`_nucleus_floor`). Ties at a cutoff are kept.
    """
    if top_k and top_k < logits.shape[-1]:
        kth = jnp.min(jax.lax.top_k(logits, top_k)[0], axis=-1, keepdims=True)
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p < 1.0:
        probs = jax.nn.softmax(logits, axis=-1)
        bits = jax.lax.bitcast_convert_type(probs, jnp.int32)
        logits = jnp.where(bits < _nucleus_floor(probs, bits, top_p)[..., None], -jnp.inf, logits)
    return logits


def _nucleus_floor(probs, bits, top_p: float):
    """Smallest b with mass(probs whose bits > b) < top_p: keep exactly the tokens whose
    probability bits are ≥ b, i.e. those with less than top_p of mass strictly above them
    (the sorted-cumsum definition; at least the most likely token). Non-negative float32
    values order like their int32 bits, so 32 halvings of the int range are exact."""

    def mass_above(b):
        return jnp.sum(jnp.where(bits > b[..., None], probs, 0.0), axis=-1)

    def halve(_, bounds):
        lo, hi = bounds  # invariant: mass_above(lo) >= top_p > mass_above(hi)
        mid = lo + (hi - lo) // 2
        below = mass_above(mid) < top_p
        return jnp.where(below, lo, mid), jnp.where(below, mid, hi)

    hi = jnp.max(bits, axis=-1)
    lo = jnp.full_like(hi, -1)
    return jax.lax.fori_loop(0, 32, halve, (lo, hi))[1]


@struct.dataclass
class Decoded:
    """Output of `decode_loop`: tokens `[B, R, n]` (0 past a branch's end) and their log-probs."""

    tokens: jax.Array
    logp: jax.Array  # log-prob under the (tempered) sampling policy, 0 past the end
    lengths: jax.Array  # [B, R] kept tokens
    cache: model_lib.KVCache


def decode_loop(params, cfg: ModelConfig, logits, cache, start_pos, key, max_len: int,
                temperature: float, top_k: int, top_p: float, stop_id, keep_stop: bool,
                prefix_k=None, prefix_v=None, prefix_mask=None) -> Decoded:
    """Sample up to `max_len` tokens per branch from `logits [B, R, V]` onwards.

    Token u of a branch sits at RoPE position `start_pos[b, r] + u`. A branch ends at
    `stop_id` (kept in the output iff `keep_stop`); its later steps are written as invalid
    slots, which no query ever attends to. The prefix (a window cache `[L, B, P, ...]`)
    is read with `prefix_mask [B, R, 1, P]`.
    """
    batch, branches, _ = logits.shape
    prefix = None
    if prefix_k is not None:
        prefix = model_lib.SharedPrefix(k=prefix_k, v=prefix_v, mask=prefix_mask)

    def body(state):
        step, last, cache, out, logp, done, lengths, key = state
        key, sub = jax.random.split(key)
        token = sample_logits(last, sub, temperature, top_k, top_p)
        token_logp = jnp.take_along_axis(vocab_scores.tempered_logp(last, temperature), token[..., None], -1)[..., 0]
        stop = token == stop_id
        keep = ~done & (keep_stop | ~stop)
        out = out.at[:, :, step].set(jnp.where(keep, token, 0))
        logp = logp.at[:, :, step].set(jnp.where(keep, token_logp, 0.0))
        lengths = lengths + keep.astype(jnp.int32)
        done = done | stop
        new_logits, cache = model_lib.extend(
            params, cfg, token[..., None], (start_pos + step)[..., None], cache, prefix=prefix,
            valid=keep[..., None])
        return step + 1, new_logits[:, :, 0], cache, out, logp, done, lengths, key

    def cond(state):
        return (state[0] < max_len) & ~jnp.all(state[5])

    zeros = jnp.zeros((batch, branches, max_len))
    state = (jnp.zeros((), jnp.int32), logits.astype(jnp.float32), cache, zeros.astype(jnp.int32),
             zeros.astype(jnp.float32), jnp.zeros((batch, branches), bool),
             jnp.zeros((batch, branches), jnp.int32), key)
    _, _, cache, out, logp, _, lengths, _ = jax.lax.while_loop(cond, body, state)
    return Decoded(tokens=out, logp=logp, lengths=lengths, cache=cache)


@functools.partial(jax.jit, static_argnames=("cfg", "max_new_tokens", "temperature", "top_k", "top_p"))
def generate(params, cfg: ModelConfig, prompt, prompt_valid, key, max_new_tokens: int,
             temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, eos_id: int = -1):
    """Continue left-padded prompts `[B, P]` (`prompt_valid` marks real tokens).

    Returns `(tokens [B, max_new_tokens], lengths [B])`; tokens after a row's EOS are 0.
    """
    batch, prompt_len = prompt.shape
    positions = jnp.maximum(jnp.cumsum(prompt_valid, axis=1) - 1, 0).astype(jnp.int32)
    cache = model_lib.init_cache(cfg, batch, prompt_len + max_new_tokens)
    logits, cache = model_lib.prefill(params, cfg, prompt, cache, positions, prompt_valid)
    start = (positions[:, -1] + 1)[:, None]
    out = decode_loop(params, cfg, logits[:, None, -1], cache, start, key, max_new_tokens,
                      temperature, top_k, top_p, eos_id, keep_stop=True)
    return out.tokens[:, 0], out.lengths[:, 0]


@struct.dataclass
class Rollout:
    """Thoughts of N = B·K·G branches laid out `[B, K·G]` (groups of G contiguous)."""

    t: jax.Array  # [B, R] thinking position of each branch
    thoughts: jax.Array  # [B, R, L] sampled tokens, 0 past `lengths`
    lengths: jax.Array  # [B, R] thought tokens (close marker excluded)
    logp: jax.Array  # [B, R, L] log π_θold of each thought token at the sampling temperature
    s_pred: jax.Array  # [B, R] log p_θold(x_t | x_<t, thought)
    prediction: jax.Array  # [B, R] greedy next token after the thought (thinking accuracy)


def finish_thoughts(params, cfg: ModelConfig, rcfg: RLPConfig, window, t_branch, decoded: Decoded,
                    prefix_fn) -> Rollout:
    """Teacher-force the close marker after each thought and score the true x_t (S_pred)."""
    o, c = len(rcfg.open_ids), len(rcfg.close_ids)
    shape = t_branch.shape
    close_tok = jnp.broadcast_to(jnp.asarray(rcfg.close_ids, jnp.int32), shape + (c,))
    close_pos = (t_branch + o + decoded.lengths)[..., None] + jnp.arange(c)
    logits, _ = model_lib.extend(params, cfg, close_tok, close_pos, decoded.cache, prefix=prefix_fn(c))
    final = jax.nn.log_softmax(logits[:, :, -1].astype(jnp.float32), axis=-1)
    s_pred = jnp.take_along_axis(final, br.targets_at(window, t_branch)[..., None], -1)[..., 0]
    return Rollout(t=t_branch, thoughts=decoded.tokens, lengths=decoded.lengths, logp=decoded.logp,
                   s_pred=s_pred, prediction=jnp.argmax(final, axis=-1).astype(jnp.int32))


def rollout_thoughts(params, cfg: ModelConfig, rcfg: RLPConfig, window, t, key) -> Rollout:
    """G thoughts at each of the K positions `t [B, K]` of every window `[B, T]`.

    One prefill per window; every branch then reads the window's cache through the mask
    `slot < t` (no copy), and writes only its own open marker + thought + close marker
    into a small per-branch cache of `o + L + c` slots.
    """
    batch, window_len = window.shape
    t_branch = br.branch_starts(t, rcfg.group_size)
    window_cache = model_lib.init_cache(cfg, batch, window_len)
    _, window_cache = model_lib.prefill(params, cfg, window, window_cache)

    def prefix_fn(queries):
        return model_lib.prefix_from_cache(window_cache, br.window_mask(t_branch, window_len, queries))

    o = len(rcfg.open_ids)
    cache = model_lib.init_cache(cfg, batch, rcfg.branch_len, branches=t_branch.shape[1])
    open_tok = jnp.broadcast_to(jnp.asarray(rcfg.open_ids, jnp.int32), t_branch.shape + (o,))
    open_pos = t_branch[..., None] + jnp.arange(o)
    logits, cache = model_lib.extend(params, cfg, open_tok, open_pos, cache, prefix=prefix_fn(o))
    one = prefix_fn(1)
    decoded = decode_loop(params, cfg, logits[:, :, -1], cache, t_branch + o, key, rcfg.thought_len,
                          rcfg.temperature, rcfg.top_k, rcfg.top_p, rcfg.close_ids[0], keep_stop=False,
                          prefix_k=one.k, prefix_v=one.v, prefix_mask=one.mask)
    return finish_thoughts(params, cfg, rcfg, window, t_branch, decoded, prefix_fn)


rollout_thoughts_jit = jax.jit(rollout_thoughts, static_argnames=("cfg", "rcfg"))
