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
