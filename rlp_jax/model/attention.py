"""Attention math shared by every entry point of the model: RoPE and multi-block attention.

Queries are always laid out `[batch, branch, query, heads, head_dim]`. They attend to one
or more *key blocks*, each either

* per-branch: keys `[batch, branch, keys, kv_heads, head_dim]` (the sequence itself, a
  KV cache, or a branch's own thought tokens), or
* shared: keys `[batch, keys, kv_heads, head_dim]`, visible to every branch of a row
  (the window prefix that all thought branches read (docs/architecture.md) without copying it).

Each block carries a boolean mask `[batch, branch, query, keys]`. Scores of all blocks are
merged under one softmax, so attending to (shared prefix + own keys) equals attending to
their concatenation, without ever materialising the concatenation per branch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import jax.numpy as jnp

_MASKED = -0.7 * float(jnp.finfo(jnp.float32).max)


@dataclasses.dataclass(frozen=True)
class KeyBlock:
    """Keys, values and a visibility mask; `shared` blocks have no branch axis."""

    k: jax.Array
    v: jax.Array
    mask: jax.Array  # bool [B, R, Q, K]
    shared: bool = False


def rope_inverse_frequencies(head_dim: int, theta: float, scaling: dict | None) -> jnp.ndarray:
    """HF-convention inverse frequencies, with optional `linear` or `llama3` scaling."""
    inv = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    if not scaling:
        return inv
    kind = scaling.get("rope_type", scaling.get("type"))
    factor = float(scaling["factor"])
    if kind == "linear":
        return inv / factor
    if kind == "llama3":
        low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
        original = float(scaling["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv
        scaled = jnp.where(wavelen > original / low, inv / factor, inv)
        smooth = (original / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= original / high) & (wavelen <= original / low)
        return jnp.where(medium, smoothed, scaled)
    raise ValueError(f"unsupported rope scaling type {kind!r}")


def apply_rope(x: jax.Array, positions: jax.Array, inv_freq: jax.Array) -> jax.Array:
    """Rotate-half RoPE. x: [..., S, H, D]; positions: [..., S]."""
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [..., S, D/2]
    angles = jnp.concatenate([angles, angles], axis=-1)[..., None, :]  # [..., S, 1, D]
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    x32 = x.astype(jnp.float32)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x32[..., half:], x32[..., :half]], axis=-1)
    return (x32 * cos + rotated * sin).astype(x.dtype)


def multi_block_attention(q: jax.Array, blocks: Sequence[KeyBlock]) -> jax.Array:
    """Softmax attention of q `[B, R, Q, H, D]` over the union of `blocks`.

    Grouped-query attention: the H query heads are split into kv_heads groups.
    Returns `[B, R, Q, H, D]` in q's dtype; scores and softmax run in float32.
    """
    batch, branches, queries, heads, head_dim = q.shape
    kv_heads = blocks[0].k.shape[-2]
    group = heads // kv_heads
    qg = q.reshape(batch, branches, queries, kv_heads, group, head_dim)
    qg = qg * jnp.asarray(1.0 / math.sqrt(head_dim), q.dtype)
    scores = []
    for block in blocks:
        pattern = "brqkgd,bpkd->brqkgp" if block.shared else "brqkgd,brpkd->brqkgp"
        s = jnp.einsum(pattern, qg, block.k, preferred_element_type=jnp.float32)
        scores.append(jnp.where(block.mask[:, :, :, None, None, :], s, _MASKED))
    weights = jax.nn.softmax(jnp.concatenate(scores, axis=-1), axis=-1)
    out = jnp.zeros(qg.shape, jnp.float32)
    start = 0
    for block in blocks:
        size = block.k.shape[-3]
        w = weights[..., start : start + size].astype(block.v.dtype)
        pattern = "brqkgp,bpkd->brqkgd" if block.shared else "brqkgp,brpkd->brqkgd"
        out = out + jnp.einsum(pattern, w, block.v, preferred_element_type=jnp.float32)
        start += size
    return out.reshape(q.shape).astype(q.dtype)


def causal_segment_mask(positions: jax.Array, segment_ids: jax.Array | None) -> jax.Array:
    """Mask `[B, R, S, S]` for teacher forcing: causal in slot order, same segment only."""
    slots = jnp.arange(positions.shape[-1])
    mask = slots[:, None] >= slots[None, :]
    mask = jnp.broadcast_to(mask, positions.shape + positions.shape[-1:])
    if segment_ids is not None:
        mask = mask & (segment_ids[..., :, None] == segment_ids[..., None, :])
    return mask


def attend(q: jax.Array, blocks: Sequence[KeyBlock], impl: str = "einsum", block_size: int = 512) -> jax.Array:
    """Attention by the configured implementation (`ModelConfig.attention`): the einsum path,
    or `blockwise_attention` wherever queries or a key block are longer than one chunk."""
    longest = max([q.shape[2]] + [block.k.shape[-3] for block in blocks])
    if impl == "blockwise" and longest > block_size:
        return blockwise_attention(q, blocks, block_size)
    return multi_block_attention(q, blocks)


def _chunks(x: jax.Array, axis: int, size: int, fill) -> jax.Array:
    """`x` padded along `axis` to a multiple of `size` with `fill`, split there into a new
    leading axis of chunks."""
    length = x.shape[axis]
    count = -(-length // size)
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, count * size - length)
    x = jnp.pad(x, pad, constant_values=fill)
    x = x.reshape(x.shape[:axis] + (count, size) + x.shape[axis + 1:])
    return jnp.moveaxis(x, axis, 0)


def blockwise_attention(q: jax.Array, blocks: Sequence[KeyBlock], block_size: int) -> jax.Array:
    """`multi_block_attention` without its `[B, R, Q, H, all keys]` scores.

    Queries go `block_size` at a time; each chunk of queries reads every block's keys
    `block_size` at a time with an online softmax (running max, sum and output), so the
    shared prefix and a branch's own keys merge by log-sum-exp and nothing larger than
    `[B, R, chunk, H, chunk]` scores exists. The chunk step is rematerialised, so the
    backward pass keeps only the running statistics per chunk. Padding keys get exactly zero
    weight; masked keys keep the einsum path's finite score, so a query that may see no key
    averages all of them, as there.
    """
    batch, branches, queries, heads, head_dim = q.shape
    kv_heads = blocks[0].k.shape[-2]
    qg = q.reshape(batch, branches, queries, kv_heads, heads // kv_heads, head_dim)
    qg = qg * jnp.asarray(1.0 / math.sqrt(head_dim), q.dtype)
    q_chunks = _chunks(qg, 2, block_size, 0)  # [nq, B, R, c, KV, G, D]
    mask_chunks = [_chunks(block.mask, 2, block_size, False) for block in blocks]  # [nq, B, R, c, K]

    def one_query_chunk(inputs):
        q_c, masks = inputs
        stats = (jnp.full(q_c.shape[:-1], -jnp.inf, jnp.float32), jnp.zeros(q_c.shape[:-1], jnp.float32),
                 jnp.zeros(q_c.shape, jnp.float32))
        for block, mask in zip(blocks, masks):
            stats = _scan_keys(q_c, block, mask, block_size, stats)
        _, total, out = stats
        return out / total[..., None]

    out = jax.lax.map(one_query_chunk, (q_chunks, mask_chunks))  # [nq, B, R, c, KV, G, D]
    out = jnp.moveaxis(out, 0, 2).reshape(batch, branches, -1, heads, head_dim)[:, :, :queries]
    return out.astype(q.dtype)


def _scan_keys(q_c, block: KeyBlock, mask, block_size: int, stats):
    """Fold one key block into the running `(max, sum, output)` of a query chunk."""
    key_axis = block.k.ndim - 3
    k = _chunks(block.k, key_axis, block_size, 0)
    v = _chunks(block.v, key_axis, block_size, 0)
    real = _chunks(jnp.ones(block.k.shape[key_axis], bool), 0, block_size, False)  # [n, c]
    visible = _chunks(mask, 3, block_size, False)  # [n, B, R, c_q, c_k]
    score_pattern = "brqkgd,bpkd->brqkgp" if block.shared else "brqkgd,brpkd->brqkgp"
    value_pattern = "brqkgp,bpkd->brqkgd" if block.shared else "brqkgp,brpkd->brqkgd"

    @jax.checkpoint
    def step(carry, chunk):
        m, total, out = carry
        k_c, v_c, real_c, visible_c = chunk
        s = jnp.einsum(score_pattern, q_c, k_c, preferred_element_type=jnp.float32)
        s = jnp.where(visible_c[:, :, :, None, None, :], s, _MASKED)
        s = jnp.where(real_c, s, -jnp.inf)
        m_new = jnp.maximum(m, jnp.max(s, axis=-1))
        p = jnp.exp(s - m_new[..., None])
        scale = jnp.exp(m - m_new)
        total = total * scale + jnp.sum(p, axis=-1)
        out = out * scale[..., None] + jnp.einsum(value_pattern, p.astype(v_c.dtype), v_c,
                                                  preferred_element_type=jnp.float32)
        return (m_new, total, out), None

    stats, _ = jax.lax.scan(step, stats, (k, v, real, visible))
    return stats
