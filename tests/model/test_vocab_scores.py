"""Chunked vocabulary-head scores equal the full-logits computation, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlp_jax.model import transformer as model
from rlp_jax.objectives import ntp
from rlp_jax.rollout import no_think as rewards
from rlp_jax.model import vocab_scores
from rlp_jax.model.config import ModelConfig

BASE = ModelConfig(vocab_size=37, d_model=16, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=8, mlp_dim=32)


def _full_scores(params, cfg, hidden, targets, temperature):
    logp = vocab_scores.tempered_logp(model.head_logits(params, cfg, hidden), temperature)
    picked = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
    return picked, -jnp.sum(jnp.exp(logp) * logp, axis=-1)


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_chunked_scores_and_gradients_equal_full_logits(tie, temperature):
    cfg = BASE.replace(tie_embeddings=tie, head_chunk=4)  # 3·7 = 21 rows: 6 chunks, 3 padded rows
    params = model.init_params(cfg, jax.random.key(0))
    hidden = jax.random.normal(jax.random.key(1), (3, 7, cfg.d_model))
    targets = jax.random.randint(jax.random.key(2), (3, 7), 0, cfg.vocab_size)
    weights = jax.random.normal(jax.random.key(3), (2, 3, 7))

    def objective(fn, params, hidden):
        picked, entropy = fn(params, cfg, hidden, targets, temperature)
        return jnp.sum(weights[0] * picked + weights[1] * entropy), (picked, entropy)

    grad = jax.jit(jax.grad(objective, argnums=(1, 2), has_aux=True), static_argnums=0)
    (gp_chunk, gh_chunk), out_chunk = grad(vocab_scores.target_scores, params, hidden)
    (gp_full, gh_full), out_full = grad(_full_scores, params, hidden)
    for a, b in zip(out_chunk, out_full):
        assert a.shape == targets.shape
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(gh_chunk, gh_full, atol=1e-6, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(gp_chunk), jax.tree.leaves(gp_full)):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-6)
    head = "embed" if tie else "lm_head"
    assert float(jnp.abs(jax.tree.leaves(gp_chunk["params"][head])[0]).max()) > 1e-3


def test_head_logits_equal_the_full_forward():
    for tie in (True, False):
        cfg = BASE.replace(tie_embeddings=tie)
        params = model.init_params(cfg, jax.random.key(4))
        tokens = jax.random.randint(jax.random.key(5), (2, 9), 0, cfg.vocab_size)
        hidden = model.forward(params, cfg, tokens, head=False)
        np.testing.assert_array_equal(model.head_logits(params, cfg, hidden), model.forward(params, cfg, tokens))


def test_ntp_loss_and_no_think_scores_chunked_equal_full_logits():
    cfg = BASE.replace(head_chunk=5)  # 2·11 = 22 targets
    params = model.init_params(cfg, jax.random.key(6))
    window = jax.random.randint(jax.random.key(7), (2, 12), 0, cfg.vocab_size).at[1, 8:].set(ntp.PAD_ID)
    logits = model.forward_compiled(params, cfg, window)[:, :-1]

    loss, grads = jax.value_and_grad(ntp.ntp_loss)(params, cfg, window)
    loss_full, grads_full = jax.value_and_grad(
        lambda p: ntp.nll_from_logits(model.forward(p, cfg, window)[:, :-1], window))(params)
    np.testing.assert_allclose(loss, loss_full, atol=1e-6, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_full)):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-6)

    for got, want in zip(rewards.no_think_scores(params, cfg, window), rewards.scores_from_logits(logits, window)):
        assert got.shape == window.shape
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=1e-6)
