"""Subprocess body for test_sharding: forward + gradient on a (data, fsdp, tensor) mesh.

Run as `python _sharded_forward_worker.py OUT.npz DATA FSDP TENSOR` with XLA_FLAGS giving
the fake CPU device count; writes logits, loss, gradients and the parameter layout.
"""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_default_matmul_precision", "highest")

from rlp_jax.model import transformer as model
from rlp_jax.model import sharding
from rlp_jax.model.config import ModelConfig  # noqa: E402

CFG = ModelConfig(vocab_size=128, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16,
                  mlp_dim=128, qk_norm=True, tie_embeddings=False)


def loss_fn(params, tokens):
    logits = model.forward(params, CFG, tokens[:, :-1])
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1))


def main(out, data, fsdp, tensor):
    mesh = sharding.make_mesh(sharding.MeshConfig(data=data, fsdp=fsdp, tensor=tensor))
    p_shard = sharding.param_shardings(CFG, mesh)
    params = jax.device_put(model.init_params(CFG, jax.random.key(0)), p_shard)
    tokens = jax.random.randint(jax.random.key(1), (8, 33), 0, CFG.vocab_size)
    tokens = jax.device_put(tokens, sharding.batch_sharding(mesh, 2))
    fwd = sharding.sharded_jit(lambda p, t: model.forward(p, CFG, t), mesh,
                               in_shardings=(p_shard, sharding.batch_sharding(mesh, 2)))
    grad = sharding.sharded_jit(jax.value_and_grad(loss_fn), mesh,
                                in_shardings=(p_shard, sharding.batch_sharding(mesh, 2)),
                                out_shardings=(sharding.replicated(mesh), p_shard))
    logits = fwd(params, tokens)
    loss, grads = grad(params, tokens)
    flat = {jax.tree_util.keystr(k, simple=True, separator="/"): np.asarray(v)
            for k, v in jax.tree_util.tree_flatten_with_path(grads)[0]}
    actual = {jax.tree_util.keystr(k, simple=True, separator="/"): str(v.sharding.spec)
              for k, v in jax.tree_util.tree_flatten_with_path(params)[0]}
    np.savez(out, logits=np.asarray(logits), loss=np.asarray(loss), **{"grad:" + k: v for k, v in flat.items()})
    with open(out + ".layout.json", "w") as f:
        json.dump({"actual": actual, "devices": len(mesh.devices.flat)}, f)


if __name__ == "__main__":
    main(sys.argv[1], *map(int, sys.argv[2:5]))
