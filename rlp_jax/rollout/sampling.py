"""Token sampling: temperature / top-k / top-p, and the one decode loop.

`decode_loop` is a `lax.while_loop` of one-token `extend`s over [B, R] branches with a
per-branch KV cache and an optional shared prefix; branches stop independently. Its two
users: `generate` here (prompt → continuation, R = 1, the stop token kept) and
`rlp_jax.rollout.thoughts` (K·G thoughts per window against the window's cache).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from flax import struct

from rlp_jax.model import sharding
from rlp_jax.model import transformer as model_lib
from rlp_jax.model import vocab_scores
from rlp_jax.model.config import ModelConfig


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
class Sampler:
    """How to draw tokens: static settings of one `decode_loop`."""

    max_len: int = struct.field(pytree_node=False)
    temperature: float = struct.field(pytree_node=False, default=1.0)
    top_k: int = struct.field(pytree_node=False, default=0)
    top_p: float = struct.field(pytree_node=False, default=1.0)
    stop_id: int = struct.field(pytree_node=False, default=-1)
    keep_stop: bool = struct.field(pytree_node=False, default=False)  # the stop token is output
    min_len: int = struct.field(pytree_node=False, default=0)  # stop_id impossible before this many tokens


@struct.dataclass
class DecodeState:
    """The `while_loop` carry: tokens `[B, R, n]` (0 past a branch's end), their log-probs
    under the tempered sampling policy (0 past the end), and the per-branch cache."""

    step: jax.Array
    logits: jax.Array  # [B, R, V] of the next token
    cache: model_lib.KVCache
    tokens: jax.Array
    logp: jax.Array
    done: jax.Array  # [B, R]
    lengths: jax.Array  # [B, R] kept tokens
    key: jax.Array

    @classmethod
    def start(cls, logits, cache, key, max_len: int) -> "DecodeState":
        batch, branches, _ = logits.shape
        zeros = jnp.zeros((batch, branches, max_len))
        return cls(step=jnp.zeros((), jnp.int32), logits=logits.astype(jnp.float32), cache=cache,
                   tokens=zeros.astype(jnp.int32), logp=zeros.astype(jnp.float32),
                   done=jnp.zeros((batch, branches), bool), lengths=jnp.zeros((batch, branches), jnp.int32),
                   key=key)

    def pinned(self) -> "DecodeState":
        """The carry laid out by batch (rows over the data-parallel devices, KV heads over
        tensor): left to propagation, XLA may replicate the batch and split d_model instead,
        which puts all-reduces of every layer's activations inside the loop."""
        rows = ("act_batch",)
        kv = (None, "act_batch", None, None, "kv_heads", None)
        cache = self.cache.replace(k=sharding.constrain(self.cache.k, kv), v=sharding.constrain(self.cache.v, kv),
                                   slot_pos=sharding.constrain(self.cache.slot_pos, rows))
        return self.replace(logits=sharding.constrain(self.logits, rows), cache=cache,
                            tokens=sharding.constrain(self.tokens, rows), logp=sharding.constrain(self.logp, rows),
                            done=sharding.constrain(self.done, rows), lengths=sharding.constrain(self.lengths, rows))


DECODE_SCOPE = "decode_loop"


def decode_loop(params, cfg: ModelConfig, state: DecodeState, sampler: Sampler, start_pos,
                prefix: model_lib.SharedPrefix | None = None) -> DecodeState:
    """Sample up to `sampler.max_len` tokens per branch from `state.logits` onwards.

    Token u of a branch sits at RoPE position `start_pos[b, r] + u`. A branch ends at
    `stop_id` (kept in the output iff `keep_stop`); its later steps are written as invalid
    slots, which no query ever attends to. Before step `min_len` the stop token is banned:
    it is never sampled and the log-probs are those of the renormalised distribution. The
    prefix (a window cache) is read through its per-branch mask.
    """
    params = sharding.gathered_for_decode(params, cfg)  # once, not per token

    def body(s: DecodeState) -> DecodeState:
        key, sub = jax.random.split(s.key)
        logits = s.logits
        if sampler.min_len > 0 and sampler.stop_id >= 0:
            logits = vocab_scores.ban_token(logits, sampler.stop_id, s.step < sampler.min_len)
        token = sample_logits(logits, sub, sampler.temperature, sampler.top_k, sampler.top_p)
        tempered = vocab_scores.tempered_logp(logits, sampler.temperature)
        token_logp = jnp.take_along_axis(tempered, token[..., None], -1)[..., 0]
        stop = token == sampler.stop_id
        keep = ~s.done & (sampler.keep_stop | ~stop)
        logits, cache = model_lib.extend(params, cfg, token[..., None], (start_pos + s.step)[..., None], s.cache,
                                         prefix=prefix, valid=keep[..., None])
        return s.replace(step=s.step + 1, logits=logits[:, :, 0], cache=cache,
                         tokens=s.tokens.at[:, :, s.step].set(jnp.where(keep, token, 0)),
                         logp=s.logp.at[:, :, s.step].set(jnp.where(keep, token_logp, 0.0)),
                         done=s.done | stop, lengths=s.lengths + keep.astype(jnp.int32), key=key).pinned()

    def cond(s: DecodeState):
        return (s.step < sampler.max_len) & ~jnp.all(s.done)

    with jax.named_scope(DECODE_SCOPE):  # `rlp-jax compile` finds the loop's collectives by this name
        return jax.lax.while_loop(cond, body, state.pinned())


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
    sampler = Sampler(max_new_tokens, temperature, top_k, top_p, stop_id=eos_id, keep_stop=True)
    out = decode_loop(params, cfg, DecodeState.start(logits[:, None, -1], cache, key, max_new_tokens), sampler,
                      start)
    return out.tokens[:, 0], out.lengths[:, 0]
