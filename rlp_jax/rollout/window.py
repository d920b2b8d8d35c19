"""Packed windows: tokens with the documents they belong to.

The data pipeline packs several documents into one `[B, T]` window. Everything that reads a
window — the no-think pass, where to think, the thought branches, the gradient pass,
held-out and `rlp-jax eval` — must see each document alone: attention only within the
document, RoPE positions counted from its start, and no prediction across a document
boundary or at padding. A `Window` carries what that needs; a plain `[B, T]` token array is
read as one document per row (`as_window`), so tests and benchmarks can pass tokens alone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass
class Window:
    """`[B, T]` arrays of one batch of windows (the data pipeline's schema)."""

    tokens: jax.Array
    segment_ids: jax.Array  # 0 = padding, 1.. = document number within the window
    positions: jax.Array  # RoPE positions, restarting at 0 at each document (and window) start

    @property
    def shape(self):
        return self.tokens.shape


def as_window(x) -> Window:
    """A `Window`, or tokens `[B, T]` read as one document per row with no padding."""
    if isinstance(x, Window):
        return x
    tokens = jnp.asarray(x, jnp.int32)
    return Window(tokens=tokens, segment_ids=jnp.ones_like(tokens),
                  positions=jnp.broadcast_to(jnp.arange(tokens.shape[-1], dtype=jnp.int32), tokens.shape))


def from_batch(batch: dict) -> Window:
    """A host batch (dict of numpy arrays; `segment_ids`/`positions` optional) as a `Window`."""
    tokens = np.asarray(batch["tokens"], np.int32)
    segments = batch.get("segment_ids")
    positions = batch.get("positions")
    return Window(tokens=tokens,
                  segment_ids=np.ones_like(tokens) if segments is None else np.asarray(segments, np.int32),
                  positions=(np.broadcast_to(np.arange(tokens.shape[-1], dtype=np.int32), tokens.shape).copy()
                             if positions is None else np.asarray(positions, np.int32)))


def take_rows(window: Window, rows) -> Window:
    """The windows at `rows` (RPT's slots gather their window)."""
    return jax.tree.map(lambda a: jnp.take(a, rows, axis=0), window)


def target_mask(window: Window):
    """`[B, T]` True where x_t is a real token of the same document as x_{t-1}: the
    positions whose prediction from x_<t means anything (column 0 is always False)."""
    seg = window.segment_ids
    same = (seg[:, 1:] == seg[:, :-1]) & (seg[:, 1:] > 0)
    return jnp.concatenate([jnp.zeros_like(same[:, :1]), same], axis=1)


def prefix_visibility(window: Window, t_branch, queries: int):
    """Mask `[B, R, queries, T]`: branch r (thinking at slot `t[b, r]`) reads the window
    slots before t that belong to the same document as x_t."""
    seg = window.segment_ids
    slots = jnp.arange(seg.shape[1])
    own = jnp.take_along_axis(seg, t_branch, axis=1)  # [B, R]
    visible = (slots < t_branch[..., None]) & (seg[:, None, :] == own[..., None])  # [B, R, T]
    return jnp.broadcast_to(visible[:, :, None, :], t_branch.shape + (queries, seg.shape[1]))
