"""Model directories: save → load round trip, dtype override, mesh placement, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlp_jax.model import transformer as model
from rlp_jax.model import sharding
from rlp_jax.errors import UserError
from rlp_jax.model.config import ModelConfig
from rlp_jax.model.io import load_model, save_model

CFG = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, mlp_dim=48)


def test_round_trip_is_exact(tmp_path):
    params = model.init_params(CFG, jax.random.key(3))
    save_model(str(tmp_path / "m"), CFG, params)
    cfg, restored = load_model(str(tmp_path / "m"))
    assert cfg == CFG
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(restored)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_dtype_override_and_mesh_placement(tmp_path):
    params = model.init_params(CFG, jax.random.key(3))
    save_model(str(tmp_path / "m"), CFG, params)
    mesh = sharding.make_mesh(sharding.MeshConfig())
    cfg, restored = load_model(str(tmp_path / "m"), mesh=mesh, dtype="bfloat16")
    assert cfg.param_dtype == "bfloat16"
    leaves = jax.tree.leaves(restored)
    assert all(x.dtype == jnp.bfloat16 for x in leaves)
    assert all(isinstance(x.sharding, jax.sharding.NamedSharding) for x in leaves)
    np.testing.assert_allclose(np.asarray(leaves[0], np.float32), np.asarray(jax.tree.leaves(params)[0]),
                               rtol=1e-2, atol=1e-3)


def test_refuses_to_overwrite_and_reports_missing_params(tmp_path):
    params = model.init_params(CFG, jax.random.key(3))
    save_model(str(tmp_path / "m"), CFG, params)
    with pytest.raises(UserError, match="already exists"):
        save_model(str(tmp_path / "m"), CFG, params)
    CFG.save(str(tmp_path / "only_config"))
    with pytest.raises(UserError, match="params"):
        load_model(str(tmp_path / "only_config"))


def test_model_config_validation_names_the_field():
    with pytest.raises(UserError, match="n_kv_heads"):
        ModelConfig(n_heads=4, n_kv_heads=3)
    with pytest.raises(UserError, match="family"):
        ModelConfig(family="gpt2")
    with pytest.raises(UserError, match="unknown key"):
        ModelConfig.from_dict({"d_model": 8, "colour": "blue"})
    assert hash(CFG.replace(rope_scaling={"rope_type": "linear", "factor": 2.0})) != hash(CFG)
