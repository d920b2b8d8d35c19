"""The cached entry points (prefill, decode, shared-prefix branches) equal the full forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlp_jax.model import transformer as model
from rlp_jax.model.config import ModelConfig
from rlp_jax.rollout.sampling import generate, sample_logits

CFG = ModelConfig(vocab_size=101, d_model=48, n_layers=3, n_heads=6, n_kv_heads=2, head_dim=12,
                  mlp_dim=96, qk_norm=True, tie_embeddings=False)


# Compiled once per shape: op-by-op dispatch would compile every primitive for each new shape.
prefill = jax.jit(model.prefill, static_argnums=1)
decode_step = jax.jit(model.decode_step, static_argnums=1)
extend = jax.jit(model.extend, static_argnums=1)


@pytest.fixture(scope="module")
def params():
    return model.init_params(CFG, jax.random.key(0))


def _tokens(shape, seed=1):
    return jax.random.randint(jax.random.key(seed), shape, 0, CFG.vocab_size)


@pytest.mark.parametrize("scan_layers", [True, False])
def test_prefill_then_decode_matches_forward(scan_layers):
    cfg = CFG.replace(scan_layers=scan_layers)
    params = model.init_params(cfg, jax.random.key(0))
    tokens = _tokens((2, 24))
    full = model.forward_compiled(params, cfg, tokens)
    cache = model.init_cache(cfg, batch=2, length=32)
    logits, cache = prefill(params, cfg, tokens[:, :10], cache)
    steps = [logits]
    for t in range(10, 24):
        step_logits, cache = decode_step(params, cfg, tokens[:, t], jnp.full((2,), t), cache)
        steps.append(step_logits[:, None])
    assert int(cache.index) == 24
    np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, atol=1e-5, rtol=0)


def test_left_padded_prefill_matches_unpadded(params):
    tokens = _tokens((1, 9))
    full = model.forward_compiled(params, CFG, tokens)
    pad = 4
    padded = jnp.concatenate([jnp.zeros((1, pad), jnp.int32), tokens], axis=1)
    valid = jnp.arange(9 + pad)[None] >= pad
    positions = jnp.maximum(jnp.arange(9 + pad) - pad, 0)[None]
    cache = model.init_cache(CFG, 1, 16)
    logits, cache = prefill(params, CFG, padded, cache, positions, valid)
    np.testing.assert_allclose(logits[:, pad:], full, atol=1e-5, rtol=0)
    step, _ = decode_step(params, CFG, jnp.array([7]), jnp.array([9]), cache)
    ref = model.forward_compiled(params, CFG, jnp.concatenate([tokens, jnp.array([[7]])], axis=1))
    np.testing.assert_allclose(step, ref[:, -1], atol=1e-5, rtol=0)


def test_segment_ids_isolate_packed_documents(params):
    a, b = _tokens((1, 7), 2), _tokens((1, 5), 3)
    packed = jnp.concatenate([a, b], axis=1)
    seg = jnp.array([[1] * 7 + [2] * 5])
    pos = jnp.array([list(range(7)) + list(range(5))])
    out = model.forward_compiled(params, CFG, packed, pos, seg)
    np.testing.assert_allclose(out[:, :7], model.forward_compiled(params, CFG, a), atol=1e-5, rtol=0)
    np.testing.assert_allclose(out[:, 7:], model.forward_compiled(params, CFG, b), atol=1e-5, rtol=0)


def test_branches_over_shared_prefix_match_reencoding(params):
    """R branches continue a window from different cut points t_r, reading one prefill."""
    window_len, branch_len = 16, 5
    window = _tokens((2, window_len), 4)
    cache = model.init_cache(CFG, 2, window_len)
    _, cache = prefill(params, CFG, window, cache)
    cuts = jnp.array([[3, 9, 16], [1, 7, 12]])  # [B, R]: branch r sees window[:cut]
    cont = _tokens((2, 3, branch_len), 5)
    positions = cuts[..., None] + jnp.arange(branch_len)
    mask = jnp.arange(window_len)[None, None, None, :] < cuts[:, :, None, None]
    mask = jnp.broadcast_to(mask, (2, 3, branch_len, window_len))
    prefix = model.prefix_from_cache(cache, mask)
    logits, _ = extend(params, CFG, cont, positions, prefix=prefix)
    for b in range(2):
        for r in range(3):
            cut = int(cuts[b, r])
            seq = jnp.concatenate([window[b, :cut], cont[b, r]])[None]
            ref = model.forward_compiled(params, CFG, seq)[0, cut:]
            np.testing.assert_allclose(logits[b, r], ref, atol=1e-5, rtol=0)


def test_greedy_generate_matches_argmax_of_forward(params):
    prompt = _tokens((2, 6), 6)
    out, lengths = generate(params, CFG, prompt, jnp.ones_like(prompt, bool), jax.random.key(0), 8)
    seq = prompt
    for _ in range(8):
        nxt = jnp.argmax(model.forward_compiled(params, CFG, seq)[:, -1], axis=-1)
        seq = jnp.concatenate([seq, nxt[:, None]], axis=1)
    np.testing.assert_array_equal(out, seq[:, 6:])
    np.testing.assert_array_equal(lengths, [8, 8])


def test_generate_is_deterministic_per_key_and_stops_at_eos(params):
    prompt = _tokens((3, 4), 7)
    valid = jnp.ones_like(prompt, bool)
    a, _ = generate(params, CFG, prompt, valid, jax.random.key(1), 10, temperature=1.0, top_k=20)
    b, _ = generate(params, CFG, prompt, valid, jax.random.key(1), 10, temperature=1.0, top_k=20)
    np.testing.assert_array_equal(a, b)
    eos = int(a[0, 2])
    c, lengths = generate(params, CFG, prompt, valid, jax.random.key(1), 10, temperature=1.0,
                          top_k=20, eos_id=eos)
    first = int(np.argmax(np.asarray(c[0]) == eos))
    assert lengths[0] == first + 1 and np.all(np.asarray(c[0, first + 1:]) == 0)


def test_top_k_and_top_p_restrict_support():
    logits = jnp.log(jnp.array([0.5, 0.3, 0.15, 0.05]))
    keys = jax.random.split(jax.random.key(0), 2000)
    draws_k = jax.vmap(lambda k: sample_logits(logits, k, 1.0, top_k=2))(keys)
    assert set(np.unique(draws_k)) == {0, 1}
    draws_p = jax.vmap(lambda k: sample_logits(logits, k, 1.0, top_p=0.8))(keys)
    assert set(np.unique(draws_p)) == {0, 1}  # 0.5 + 0.3 reaches 0.8
    draws_p = jax.vmap(lambda k: sample_logits(logits, k, 1.0, top_p=0.81))(keys)
    assert set(np.unique(draws_p)) == {0, 1, 2}
    assert abs(float(jnp.mean(draws_k == 0)) - 0.5 / 0.8) < 0.04
