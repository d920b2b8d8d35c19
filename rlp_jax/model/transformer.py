"""Pure-functional Flax transformer for the Llama and Qwen3 families.

One set of weights serves every entry point:

* `forward`      teacher forcing over `[B, S]` tokens (with optional segment ids);
* `prefill`      writes a prompt into a `KVCache` and returns its logits;
* `decode_step`  one token per row against the cache;
* `extend`       the general form behind both: tokens `[B, R, S]` laid out as R branches
                 per row, attending to an optional *shared prefix* (e.g. a window's
                 prefilled cache, visible to all branches through a per-branch mask) plus
                 either their own causal keys or a per-branch cache. Thought rollouts are
                 this call with R = K·G branches (docs/architecture.md, "Prefix-shared
                 branch attention").

Parameters carry logical axis names (`vocab`, `embed`, `heads`, `kv_heads`, `head_dim`,
`mlp`, `layers`); `rlp_jax.model.sharding` maps them to mesh axes.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from rlp_jax.model.attention import KeyBlock, apply_rope, attend, causal_segment_mask
from rlp_jax.model.attention import rope_inverse_frequencies
from rlp_jax.model import sharding
from rlp_jax.model.config import ModelConfig

Params = Any
# Activations `[B, R, S, d_model]` stay split by rows over the data-parallel devices. (flax's
# `nn.with_logical_constraint` sees only a `jax.set_mesh` mesh, not `sharded_jit`'s.)
ACTIVATIONS = ("act_batch", None, "act_length", "act_embed")
_INIT = nn.initializers.normal(stddev=0.02)
_REMAT_POLICIES = {
    "full": None,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


@struct.dataclass
class KVCache:
    """Keys/values of every layer, `[L, B, R, S, kv_heads, head_dim]`.

    `slot_pos[b, r, s]` is the RoPE position of the token in slot s (-1: empty or padding),
    which is all the masks need; `index` is the next slot to write (shared by all rows).
    """

    k: jax.Array
    v: jax.Array
    slot_pos: jax.Array
    index: jax.Array


@struct.dataclass
class SharedPrefix:
    """A KV cache shared by the R branches of each row, with a per-branch mask [B, R, S, P]."""

    k: jax.Array  # [L, B, P, kv_heads, head_dim]
    v: jax.Array
    mask: jax.Array


@struct.dataclass
class _LayerInputs:
    """Per-layer slices that `nn.scan` iterates over (leading axis = layer)."""

    cache_k: jax.Array | None = None
    cache_v: jax.Array | None = None
    prefix_k: jax.Array | None = None
    prefix_v: jax.Array | None = None


@struct.dataclass
class _Context:
    """Inputs every layer sees unchanged."""

    positions: jax.Array  # [B, R, S]
    own_mask: jax.Array  # [B, R, S, S]: the new tokens among themselves
    cache_mask: jax.Array | None = None  # [B, R, S, cache_len]: the tokens already cached
    prefix_mask: jax.Array | None = None


def _dtype(name: str):
    return jnp.dtype(name)


class RMSNorm(nn.Module):
    eps: float
    axis_name: str = "embed"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        scale = self.param(
            "scale", nn.with_logical_partitioning(nn.initializers.ones, (self.axis_name,)),
            (x.shape[-1],), self.param_dtype,
        )
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return scale.astype(self.dtype) * y.astype(self.dtype)


def _dense(features, axes, cfg: ModelConfig, name: str, in_axes=-1):
    return nn.DenseGeneral(
        features=features, axis=in_axes, use_bias=False, name=name,
        dtype=_dtype(cfg.dtype), param_dtype=_dtype(cfg.param_dtype),
        kernel_init=nn.with_logical_partitioning(_INIT, axes),
    )


class DecoderLayer(nn.Module):
    """Pre-norm block: grouped-query attention (optional QK-norm) then a SwiGLU MLP."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x, inputs: _LayerInputs, ctx: _Context):
        cfg = self.cfg
        dtype, pdtype = _dtype(cfg.dtype), _dtype(cfg.param_dtype)
        norm = functools.partial(RMSNorm, eps=cfg.rms_eps, dtype=dtype, param_dtype=pdtype)
        h = norm(name="attn_norm")(x)
        q = _dense((cfg.n_heads, cfg.head_dim), ("embed", "heads", "head_dim"), cfg, "q")(h)
        k = _dense((cfg.n_kv_heads, cfg.head_dim), ("embed", "kv_heads", "head_dim"), cfg, "k")(h)
        v = _dense((cfg.n_kv_heads, cfg.head_dim), ("embed", "kv_heads", "head_dim"), cfg, "v")(h)
        if cfg.qk_norm:
            q = norm(axis_name="head_dim", name="q_norm")(q)
            k = norm(axis_name="head_dim", name="k_norm")(k)
        inv_freq = rope_inverse_frequencies(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)
        q = apply_rope(q, ctx.positions, inv_freq)
        k = apply_rope(k, ctx.positions, inv_freq)

        blocks = []
        if inputs.prefix_k is not None:
            blocks.append(KeyBlock(inputs.prefix_k, inputs.prefix_v, ctx.prefix_mask, shared=True))
        new_kv = None
        if inputs.cache_k is not None:
            # The new keys join the cache after the layer stack (`extend`): writing them here
            # would make every step emit a fresh copy of the whole cache as the scan output.
            k, v = k.astype(inputs.cache_k.dtype), v.astype(inputs.cache_v.dtype)
            if ctx.cache_mask is not None:
                blocks.append(KeyBlock(inputs.cache_k, inputs.cache_v, ctx.cache_mask))
            new_kv = (k, v)
        blocks.append(KeyBlock(k, v, ctx.own_mask))
        attn = attend(q, blocks, cfg.attention, cfg.attention_block)
        x = x + _dense(cfg.d_model, ("heads", "head_dim", "embed"), cfg, "o", in_axes=(-2, -1))(attn)

        h = norm(name="mlp_norm")(x)
        gate = _dense(cfg.mlp_dim, ("embed", "mlp"), cfg, "gate")(h)
        up = _dense(cfg.mlp_dim, ("embed", "mlp"), cfg, "up")(h)
        x = x + _dense(cfg.d_model, ("mlp", "embed"), cfg, "down")(nn.silu(gate) * up)
        x = sharding.constrain(x, ACTIVATIONS)
        return x, new_kv


class Transformer(nn.Module):
    """Embedding → n_layers × DecoderLayer → RMSNorm → tied or untied vocabulary head.

    With `head=False` it stops before the head and returns the normed hidden states, for
    losses that apply the head in chunks (`rlp_jax.model.vocab_scores`).
    """

    cfg: ModelConfig
    head: bool = True

    @nn.compact
    def __call__(self, tokens, inputs: _LayerInputs, ctx: _Context):
        cfg = self.cfg
        dtype, pdtype = _dtype(cfg.dtype), _dtype(cfg.param_dtype)
        embed = _embedding(cfg)
        x = embed(tokens)
        x = sharding.constrain(x, ACTIVATIONS)
        layer = DecoderLayer
        if cfg.remat != "none":
            layer = nn.remat(layer, policy=_REMAT_POLICIES[cfg.remat], prevent_cse=not cfg.scan_layers)
        if cfg.scan_layers:
            stack = nn.scan(
                layer, variable_axes={"params": 0}, split_rngs={"params": True},
                in_axes=(0, nn.broadcast), length=cfg.n_layers,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )(cfg, name="layers")
            x, new_kv = stack(x, inputs, ctx)
        else:
            new_kvs = []
            for i in range(cfg.n_layers):
                layer_inputs = jax.tree.map(lambda a, i=i: a[i], inputs)
                x, c = layer(cfg, name=f"layers_{i}")(x, layer_inputs, ctx)
                new_kvs.append(c)
            new_kv = None if new_kvs[0] is None else jax.tree.map(lambda *a: jnp.stack(a), *new_kvs)
        x = RMSNorm(cfg.rms_eps, dtype=dtype, param_dtype=pdtype, name="final_norm")(x)
        if not self.head:
            return x, new_kv
        return _vocab_head(cfg, embed, x), new_kv


def _embedding(cfg: ModelConfig) -> nn.Embed:
    return nn.Embed(
        cfg.vocab_size, cfg.d_model, dtype=_dtype(cfg.dtype), param_dtype=_dtype(cfg.param_dtype), name="embed",
        embedding_init=nn.with_logical_partitioning(_INIT, ("vocab", "embed")),
    )


def _vocab_head(cfg: ModelConfig, embed: nn.Embed, x) -> jax.Array:
    """The one definition of the output head: the embedding transposed if tied, else `lm_head`."""
    if cfg.tie_embeddings:
        logits = embed.attend(x)
    else:
        logits = _dense(cfg.vocab_size, ("embed", "vocab"), cfg, "lm_head")(x)
    return logits.astype(jnp.float32)


class _HeadOnly(nn.Module):
    """`_vocab_head` alone, under the same parameter names as in `Transformer`."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, hidden):
        return _vocab_head(self.cfg, _embedding(self.cfg), hidden)


def head_logits(params: Params, cfg: ModelConfig, hidden) -> jax.Array:
    """The vocabulary head on hidden states from `head=False` calls: float32 logits `[..., V]`.

    The same code as the end of `Transformer`, so the logits match a full call bit for bit.
    """
    inner = params["params"]
    head_params = {name: inner[name] for name in ("embed", "lm_head") if name in inner}
    return _HeadOnly(cfg).apply({"params": head_params}, hidden)


# ----------------------------------------------------------------------------- entry points


def _boxed_init(cfg: ModelConfig, key: jax.Array) -> Params:
    """Flax init on a one-token dummy input; leaves keep their logical-axis boxes."""
    tokens = jnp.zeros((1, 1, 1), jnp.int32)
    ctx = _Context(positions=jnp.zeros((1, 1, 1), jnp.int32), own_mask=jnp.ones((1, 1, 1, 1), bool))
    return Transformer(cfg).init(key, tokens, _LayerInputs(), ctx)


def abstract_params(cfg: ModelConfig) -> Params:
    """Shapes, dtypes and logical axis metadata of the parameters, without allocating."""
    return jax.eval_shape(lambda key: _boxed_init(cfg, key), jax.random.key(0))


def logical_axes(cfg: ModelConfig) -> Params:
    """Pytree of logical `PartitionSpec`s matching the parameter pytree."""
    return nn.get_partition_spec(abstract_params(cfg))


def init_params(cfg: ModelConfig, key: jax.Array) -> Params:
    """Random parameters (normal(0.02) kernels, unit norms), metadata boxes removed."""
    return nn.unbox(_boxed_init(cfg, key))


def forward(params: Params, cfg: ModelConfig, tokens, positions=None, segment_ids=None, head: bool = True):
    """Teacher-forced logits `[B, S, vocab]` (float32); hidden states `[B, S, d_model]` if not `head`.

    `segment_ids` [B, S] restrict attention to tokens of the same segment (packed
    documents); `positions` default to 0..S-1 and should restart per segment.
    """
    if positions is None:
        positions = jnp.broadcast_to(jnp.arange(tokens.shape[-1], dtype=jnp.int32), tokens.shape)
    seg = None if segment_ids is None else segment_ids[:, None]
    ctx = _Context(positions=positions[:, None], own_mask=causal_segment_mask(positions[:, None], seg))
    logits, _ = Transformer(cfg, head=head).apply(params, tokens[:, None], _LayerInputs(), ctx)
    return logits[:, 0]


# `forward` compiled once per config and shape, for callers outside a jitted step (scoring,
# evaluation, the re-encoding references): called eagerly, `forward` would dispatch and
# compile each primitive on its own, several times slower for every new shape.
forward_compiled = jax.jit(forward, static_argnums=1, static_argnames=("head",))


def init_cache(cfg: ModelConfig, batch: int, length: int, branches: int = 1, dtype=None) -> KVCache:
    """An empty cache for `batch` rows × `branches` of up to `length` tokens."""
    shape = (cfg.n_layers, batch, branches, length, cfg.n_kv_heads, cfg.head_dim)
    dtype = _dtype(dtype or cfg.dtype)
    return KVCache(
        k=jnp.zeros(shape, dtype), v=jnp.zeros(shape, dtype),
        slot_pos=jnp.full((batch, branches, length), -1, jnp.int32),
        index=jnp.zeros((), jnp.int32),
    )


def extend(params: Params, cfg: ModelConfig, tokens, positions, cache: KVCache | None = None,
           prefix: SharedPrefix | None = None, valid=None, cache_is_empty: bool = False,
           head: bool = True, segment_ids=None):
    """Run tokens `[B, R, S]` at RoPE `positions` `[B, R, S]`; the general entry point.

    With a `cache`, the tokens are written at slots `cache.index …` and attend to every
    cached slot whose position is ≤ theirs; without one, they attend causally to each
    other. With a `prefix`, they also attend to its keys where `prefix.mask` allows.
    `valid` [B, R, S] (default all) marks real tokens; invalid ones are never attended to.
    `cache_is_empty` (static) skips reading the cache's old slots (a prefill).
    `segment_ids` [B, R, S] (packed documents) restrict the new tokens to their own segment.
    Returns `(logits [B, R, S, vocab], new cache or None)`; hidden states instead of
    logits if not `head`.
    """
    inputs = _LayerInputs()
    if prefix is not None:
        inputs = inputs.replace(prefix_k=prefix.k, prefix_v=prefix.v)
    pos_written = positions if valid is None else jnp.where(valid, positions, -1)
    if cache is None:
        own_mask = causal_segment_mask(positions, None)
        if valid is not None:
            own_mask = own_mask & valid[..., None, :]
    else:
        # As in the cache: slot k is visible to query q iff it holds a real token at a
        # position ≤ q's.
        own_mask = (pos_written[..., None, :] >= 0) & (pos_written[..., None, :] <= positions[..., :, None])
    if segment_ids is not None:
        own_mask = own_mask & (segment_ids[..., :, None] == segment_ids[..., None, :])
    ctx = _Context(positions=positions, own_mask=own_mask)
    if cache is not None:
        inputs = inputs.replace(cache_k=cache.k, cache_v=cache.v)
        if not cache_is_empty:
            old = cache.slot_pos[..., None, :]
            ctx = ctx.replace(cache_mask=(old >= 0) & (old <= positions[..., :, None]))
    if prefix is not None:
        ctx = ctx.replace(prefix_mask=prefix.mask)
    logits, new_kv = Transformer(cfg, head=head).apply(params, tokens, inputs, ctx)
    if cache is None:
        return logits, None
    # One in-place write of the new keys/values of every layer (the cache is a loop carry
    # or a donated buffer in every caller).
    write = functools.partial(jax.lax.dynamic_update_slice_in_dim, start_index=cache.index, axis=3)
    new_cache = KVCache(k=write(cache.k, new_kv[0]), v=write(cache.v, new_kv[1]),
                        slot_pos=jax.lax.dynamic_update_slice_in_dim(
                            cache.slot_pos, pos_written.astype(jnp.int32), cache.index, axis=2),
                        index=cache.index + tokens.shape[-1])
    return logits, new_cache


def prefill(params: Params, cfg: ModelConfig, tokens, cache: KVCache, positions=None, valid=None,
            segment_ids=None, head: bool = True):
    """Write a prompt `[B, S]` into an empty `cache` (one branch); returns logits `[B, S, V]`, cache.

    Rows of different lengths are left-padded: pass `valid` [B, S] and positions that
    start at 0 on each row's first real token. Packed documents: pass `segment_ids` [B, S]
    and per-document positions; each token then attends within its document only.
    """
    if positions is None:
        positions = jnp.broadcast_to(jnp.arange(tokens.shape[-1], dtype=jnp.int32), tokens.shape)
    valid = None if valid is None else valid[:, None]
    seg = None if segment_ids is None else segment_ids[:, None]
    logits, cache = extend(params, cfg, tokens[:, None], positions[:, None], cache, valid=valid,
                           cache_is_empty=True, segment_ids=seg, head=head)
    return logits[:, 0], cache


def decode_step(params: Params, cfg: ModelConfig, tokens, positions, cache: KVCache):
    """One token per row (`tokens`, `positions`: [B]) → logits `[B, V]`, updated cache."""
    logits, cache = extend(params, cfg, tokens[:, None, None], positions[:, None, None], cache)
    return logits[:, 0, 0], cache


def prefix_from_cache(cache: KVCache, mask) -> SharedPrefix:
    """View a single-branch cache (e.g. a prefilled window) as a prefix shared by branches."""
    return SharedPrefix(k=cache.k[:, :, 0], v=cache.v[:, :, 0], mask=mask)
