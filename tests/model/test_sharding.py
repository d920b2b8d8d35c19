"""Sharded equals unsharded: forward and gradient on 8 fake CPU devices vs 1 device."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from rlp_jax.model import sharding
from rlp_jax.errors import UserError

WORKER = os.path.join(os.path.dirname(__file__), "_sharded_forward_worker.py")


def _run_worker(out, devices, data, fsdp, tensor):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    result = subprocess.run([sys.executable, WORKER, str(out), str(data), str(fsdp), str(tensor)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(str(out) + ".layout.json") as f:
        return np.load(out), json.load(f)


def test_eight_devices_match_one(tmp_path):
    single, single_layout = _run_worker(tmp_path / "one.npz", 1, 1, 1, 1)
    multi, layout = _run_worker(tmp_path / "eight.npz", 8, 2, 2, 2)
    assert single_layout["devices"] == 1 and layout["devices"] == 8
    np.testing.assert_allclose(multi["logits"], single["logits"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(multi["loss"], single["loss"], atol=1e-6, rtol=0)
    grad_keys = [k for k in single.files if k.startswith("grad:")]
    assert len(grad_keys) > 10
    for key in grad_keys:
        np.testing.assert_allclose(multi[key], single[key], atol=1e-5, rtol=0, err_msg=key)

    # Layout follows DEFAULT_RULES: embed->fsdp, heads/kv_heads/mlp/vocab->tensor, layers stacked.
    actual = layout["actual"]
    assert actual["params/embed/embedding"] == str(P("tensor", "fsdp"))
    assert actual["params/lm_head/kernel"] == str(P("fsdp", "tensor"))
    assert actual["params/layers/q/kernel"] == str(P(None, "fsdp", "tensor", None))
    assert actual["params/layers/k/kernel"] == str(P(None, "fsdp", "tensor", None))
    assert actual["params/layers/o/kernel"] == str(P(None, "tensor", None, "fsdp"))
    assert actual["params/layers/gate/kernel"] == str(P(None, "fsdp", "tensor"))
    assert actual["params/layers/down/kernel"] == str(P(None, "tensor", "fsdp"))
    assert actual["params/layers/q_norm/scale"] == str(P(None, None))
    assert actual["params/final_norm/scale"] == str(P("fsdp"))


def test_indivisible_dimension_is_replicated():
    import jax

    class FakeMesh:  # logical_to_mesh_spec only reads .shape
        shape = {"data": 1, "fsdp": 2, "tensor": 2}

    spec = sharding.logical_to_mesh_spec(P("embed", "kv_heads", "head_dim"), (64, 3, 16), FakeMesh())
    assert spec == P("fsdp", None, None)
    spec = sharding.logical_to_mesh_spec(P("batch", None), (8, 5), FakeMesh())
    assert spec == P("fsdp", None)
    assert jax  # the module import above must work without a multi-device backend


@pytest.mark.parametrize("mesh,devices,expected", [
    (sharding.MeshConfig(data=2, fsdp=-1, tensor=1), 8, (2, 4, 1)),
    (sharding.MeshConfig(data=1, fsdp=1, tensor=-1), 4, (1, 1, 4)),
    (sharding.MeshConfig(data=2, fsdp=2, tensor=2), 8, (2, 2, 2)),
])
def test_mesh_resolution(mesh, devices, expected):
    assert mesh.resolve(devices) == expected


@pytest.mark.parametrize("mesh,devices", [
    (sharding.MeshConfig(data=3, fsdp=-1, tensor=1), 8),
    (sharding.MeshConfig(data=2, fsdp=2, tensor=2), 4),
    (sharding.MeshConfig(data=-1, fsdp=-1, tensor=1), 4),
    (sharding.MeshConfig(data=0, fsdp=1, tensor=1), 1),
])
def test_impossible_mesh_is_a_user_error(mesh, devices):
    with pytest.raises(UserError, match="mesh"):
        mesh.resolve(devices)
