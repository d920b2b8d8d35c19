"""Run one sharded `rlp_step` on a tiny model and save the results (used in a subprocess).

Usage: python tests/train/step_worker.py OUT.npz DEVICES DATA FSDP TENSOR
The device count must be set before jax is imported, hence a separate process.
"""

import os
import sys

out, devices, mesh_sizes = sys.argv[1], int(sys.argv[2]), tuple(int(a) for a in sys.argv[3:6])
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

from rlp_jax.model import transformer as model  # noqa: E402
from rlp_jax.model.config import ModelConfig  # noqa: E402
from rlp_jax.model.sharding import MeshConfig, make_mesh  # noqa: E402
from rlp_jax.objectives.config import RLPConfig  # noqa: E402
from rlp_jax.objectives.rlp import RLP  # noqa: E402
from rlp_jax.rollout.config import RolloutConfig  # noqa: E402
from rlp_jax.train.optimizer import OptimizerConfig  # noqa: E402
from rlp_jax.train.state import init_state  # noqa: E402
from rlp_jax.train.step import make_train_step  # noqa: E402

CFG = ModelConfig(vocab_size=16, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, mlp_dim=64)
RCFG = RolloutConfig(group_size=2, positions_per_window=2, thought_len=4, temperature=1.0, open_ids=(1,),
                     close_ids=(2,), min_context=3)
LOSS = RLPConfig(minibatches=2)
EMA_DECAY = 0.9
# eps well above the float32 rounding of the gradients. Adam's first update is
# lr·g/(|g|+eps): with the default 1e-8, a gradient element that nearly cancels moves by a
# good fraction of lr on a last-bit difference between the 1- and 8-device reductions
# (seen: 2.1e-5 at lr 1e-3 on one of 4096 elements). With 1e-4 everything agrees to 2.4e-7.
OCFG = OptimizerConfig(learning_rate=1e-3, eps=1e-4)


def main():
    mesh = make_mesh(MeshConfig(*mesh_sizes))
    params = model.init_params(CFG, jax.random.key(0))
    state = init_state(params, OCFG, jax.random.key(1))
    window = jax.random.randint(jax.random.key(2), (4, 12), 3, CFG.vocab_size)
    step, shardings = make_train_step(RLP(CFG, RCFG, LOSS), OCFG, EMA_DECAY, state, mesh)
    state = jax.device_put(state, shardings)
    state, metrics = step(state, window)
    flat = {}
    for prefix, tree in (("params", state.params), ("ema", state.ema_params)):
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            flat[prefix + jax.tree_util.keystr(path)] = np.asarray(leaf)
    flat.update({f"metric/{k}": np.asarray(v) for k, v in metrics.items()})
    flat["spec/q"] = np.asarray(str(state.params["params"]["layers"]["q"]["kernel"].sharding.spec))
    np.savez(out, **flat)


if __name__ == "__main__":
    main()
