"""Blockwise (online-softmax) attention equals the einsum path, values and gradients,
and needs a fraction of its memory."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlp_jax.model import transformer as model
from rlp_jax.model.attention import KeyBlock, blockwise_attention, multi_block_attention
from rlp_jax.model.config import ModelConfig

B, R, H, KV, D = 2, 3, 4, 2, 8


def _blocks(key, queries: int, prefix: int, own: int, fully_masked_row: bool = False):
    """A shared prefix seen up to a different length per branch, with padding columns, and
    each branch's own causal keys."""
    ks = jax.random.split(key, 5)
    pk, pv = (jax.random.normal(k, (B, prefix, KV, D)) for k in ks[:2])
    ok, ov = (jax.random.normal(k, (B, R, own, KV, D)) for k in ks[2:4])
    seen = jnp.arange(prefix)[None, None, None, :] < (jnp.arange(1, R + 1) * prefix // (R + 1))[None, :, None, None]
    padding = jnp.arange(prefix) % 5 != 3  # every fifth prefix slot holds no token
    prefix_mask = jnp.broadcast_to(seen & padding, (B, R, queries, prefix))
    own_mask = jnp.broadcast_to(jnp.arange(own)[None, :] <= jnp.arange(queries)[:, None] + own - queries,
                                (B, R, queries, own))
    if fully_masked_row:
        prefix_mask = prefix_mask.at[0, 1, 0].set(False)
        own_mask = own_mask.at[0, 1, 0].set(False)
    return [KeyBlock(pk, pv, prefix_mask, shared=True), KeyBlock(ok, ov, own_mask)], ks[4]


@pytest.mark.parametrize("queries, prefix, own, size", [
    (13, 29, 13, 4),    # nothing divides the chunk size
    (16, 32, 16, 8),    # everything does
    (1, 37, 9, 8),      # one decode step against a long prefix and cache
    (7, 5, 7, 16),      # every block fits one chunk
])
def test_values_and_gradients_equal_the_einsum_path(queries, prefix, own, size):
    blocks, key = _blocks(jax.random.key(queries), queries, prefix, own, fully_masked_row=queries > 1)
    q = jax.random.normal(key, (B, R, queries, H, D))
    probe = jax.random.normal(jax.random.key(7), q.shape)

    def loss(fn, q, pk, pv, ok, ov):
        parts = [KeyBlock(pk, pv, blocks[0].mask, True), KeyBlock(ok, ov, blocks[1].mask)]
        return jnp.sum(fn(q, parts) * probe)

    args = (q, blocks[0].k, blocks[0].v, blocks[1].k, blocks[1].v)
    einsum = jax.value_and_grad(lambda *a: loss(multi_block_attention, *a), argnums=range(5))(*args)
    blockwise = jax.value_and_grad(lambda *a: loss(lambda x, b: blockwise_attention(x, b, size), *a),
                                   argnums=range(5))(*args)
    np.testing.assert_allclose(blockwise[0], einsum[0], rtol=1e-5, atol=1e-5)
    for got, want in zip(blockwise[1], einsum[1]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    out = blockwise_attention(q, blocks, size)
    np.testing.assert_allclose(out, multi_block_attention(q, blocks), rtol=1e-5, atol=1e-5)
    assert bool(jnp.all(jnp.isfinite(out)))


def test_the_whole_model_agrees_on_logits_caches_and_gradients():
    cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, mlp_dim=64)
    chunked = cfg.replace(attention="blockwise", attention_block=4)
    params = model.init_params(cfg, jax.random.key(0))
    tokens = jax.random.randint(jax.random.key(1), (2, 11), 0, 64)
    np.testing.assert_allclose(model.forward(params, chunked, tokens), model.forward(params, cfg, tokens),
                               rtol=1e-5, atol=1e-5)

    def prefill_then_extend(c):
        cache = model.init_cache(c, 2, 11)
        _, cache = model.prefill(params, c, tokens, cache)
        mask = jnp.ones((2, 3, 5, 11), bool).at[:, 1, :, 6:].set(False)
        branch = jax.random.randint(jax.random.key(2), (2, 3, 5), 0, 64)
        positions = 11 + jnp.broadcast_to(jnp.arange(5), (2, 3, 5))
        return model.extend(params, c, branch, positions, prefix=model.prefix_from_cache(cache, mask))[0]

    np.testing.assert_allclose(prefill_then_extend(chunked), prefill_then_extend(cfg), rtol=1e-5, atol=1e-5)

    def loss(p, c):
        return jnp.mean(jax.nn.log_softmax(model.forward(p, c, tokens)) * jax.nn.one_hot(tokens, 64))

    grads = jax.grad(loss)(params, chunked), jax.grad(loss)(params, cfg)
    for got, want in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1])):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_blockwise_needs_a_fraction_of_the_memory():
    length = 2048
    q = jax.ShapeDtypeStruct((1, 1, length, 4, 16), jnp.float32)
    k = jax.ShapeDtypeStruct((1, 1, length, 2, 16), jnp.float32)
    mask = jnp.tril(jnp.ones((length, length), bool))[None, None]

    def temp_bytes(fn):
        def loss(q, k, v):
            return jnp.sum(fn(q, [KeyBlock(k, v, mask)]))
        return jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(q, k, k).compile().memory_analysis().temp_size_in_bytes

    einsum = temp_bytes(multi_block_attention)
    blockwise = temp_bytes(lambda q, b: blockwise_attention(q, b, 256))
    print(f"temporaries of forward + backward at {length} tokens: einsum {einsum / 2**20:.1f} MiB, "
          f"blockwise {blockwise / 2**20:.1f} MiB")
    assert blockwise * 4 < einsum
