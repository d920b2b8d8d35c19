"""A model directory: Orbax parameters + `model_config.json` + tokenizer files.

This is what `rlp-jax convert` writes and what `score`, `sample`, `--init-from` and
evaluation read. Parameters restore directly onto any mesh (each array is read with the
sharding the target mesh gives it), so a model saved on 8 devices loads on 1.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from rlp_jax.errors import UserError
from rlp_jax.model.config import ModelConfig

PARAMS_DIR = "params"


def save_model(directory: str, cfg: ModelConfig, params, tokenizer=None) -> None:
    """Write params (Orbax), config and tokenizer into `directory`."""
    import orbax.checkpoint as ocp

    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    target = os.path.join(directory, PARAMS_DIR)
    if os.path.exists(target):
        raise UserError(f"{target} already exists; choose an empty --out directory")
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(target, params)
    checkpointer.wait_until_finished()
    cfg.save(directory)
    if tokenizer is not None:
        tokenizer.save(directory)


def load_model(directory: str, mesh=None, rules=None, dtype: str | None = None):
    """Restore `(cfg, params)` from a model directory, sharded over `mesh` if given.

    `dtype` (e.g. "float32") overrides the stored parameter dtype on restore.
    """
    import orbax.checkpoint as ocp

    from rlp_jax.model import transformer as model
    from rlp_jax.model import sharding

    directory = os.path.abspath(directory)
    if not os.path.isdir(directory):
        raise UserError(f"checkpoint directory not found: {directory}")
    cfg = ModelConfig.load(directory)
    if dtype is not None:
        cfg = cfg.replace(param_dtype=dtype)
    params_dir = os.path.join(directory, PARAMS_DIR)
    if not os.path.isdir(params_dir):
        raise UserError(f"{params_dir} not found: is {directory} an rlp-jax model directory?")
    shapes = jax.eval_shape(lambda: model.init_params(cfg, jax.random.key(0)))
    if mesh is None:
        device = jax.devices()[0]
        target_shardings = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(device), shapes)
    else:
        target_shardings = sharding.param_shardings(cfg, mesh, rules or sharding.DEFAULT_RULES)
    abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, jnp.dtype(cfg.param_dtype), sharding=s),
        shapes, target_shardings)
    try:
        params = ocp.StandardCheckpointer().restore(params_dir, abstract)
    except Exception as err:  # orbax/tensorstore raise many types for damaged files
        raise UserError(f"cannot restore parameters from {params_dir}: {err}") from None
    return cfg, params
