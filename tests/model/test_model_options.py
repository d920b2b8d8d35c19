"""Model options that must not change the numbers: remat policies; bf16 compute stays close."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlp_jax.model import transformer as model
from rlp_jax.model.config import ModelConfig

CFG = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, mlp_dim=48)
TOKENS = jax.random.randint(jax.random.key(1), (2, 12), 0, 64)


def _loss_and_grad(cfg, params):
    def loss(p):
        logits = model.forward(p, cfg, TOKENS[:, :-1])
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), TOKENS[:, 1:, None], -1))

    return jax.jit(jax.value_and_grad(loss))(params)


@pytest.mark.parametrize("scan_layers", [True, False])
@pytest.mark.parametrize("remat", ["full", "dots"])
def test_remat_does_not_change_loss_or_gradient(remat, scan_layers):
    base = CFG.replace(scan_layers=scan_layers)
    params = model.init_params(base, jax.random.key(0))
    ref_loss, ref_grad = _loss_and_grad(base, params)
    loss, grad = _loss_and_grad(base.replace(remat=remat), params)
    np.testing.assert_allclose(loss, ref_loss, atol=1e-6, rtol=0)
    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(ref_grad)):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)


def test_bfloat16_compute_is_close_to_float32():
    params = model.init_params(CFG, jax.random.key(0))
    ref = model.forward_compiled(params, CFG, TOKENS)
    out = model.forward_compiled(params, CFG.replace(dtype="bfloat16"), TOKENS)
    assert out.dtype == jnp.float32
    assert float(jnp.abs(out - ref).max()) < 0.05
    assert float(jnp.abs(out - ref).max()) > 0  # bf16 really ran
