"""Run checkpoints: one Orbax `CheckpointManager` per run directory.

A checkpoint at step s holds the state after s optimizer steps and the data iterator
positioned after s batches, as separate items so evaluation can read only what it needs:
  params, ema_params, opt_state   (Orbax StandardSave; restore onto any mesh)
  ref_params                      θ_0, only when the run keeps a fixed KL reference
  train                           step and the raw rng key data
  iter                            the Grain iterator state (one file per process)
  meta                            JSON: the resolved config, so a checkpoint is self-describing
Saves are asynchronous (arrays are copied to host, then written in the background) and
atomic (a step directory appears only when complete), so a crash mid-save never replaces
the last good checkpoint.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp

from rlp_jax.errors import UserError, one_line

STATE_ITEMS = ("params", "ema_params", "opt_state", "ref_params")
ITEMS = STATE_ITEMS + ("train", "iter", "meta")


def _has_grain() -> bool:
    try:
        import grain  # noqa: F401
        return True
    except ImportError:
        return False


def make_manager(directory: str, every: int = 1, keep: int = 3, async_save: bool = True,
                 read_only: bool = False):
    """An Orbax manager over `directory` with our items and handlers."""
    import orbax.checkpoint as ocp

    handlers = {name: ocp.StandardCheckpointHandler() for name in STATE_ITEMS + ("train",)}
    handlers["meta"] = ocp.JsonCheckpointHandler()
    names = STATE_ITEMS + ("train", "meta")
    if _has_grain():
        import grain

        handlers["iter"] = grain.checkpoint.CheckpointHandler()
        names = names + ("iter",)
    options = ocp.CheckpointManagerOptions(save_interval_steps=every, max_to_keep=keep,
                                           enable_async_checkpointing=async_save, read_only=read_only,
                                           create=not read_only)
    if not directory.startswith("gs://"):
        directory = os.path.abspath(directory)
    return ocp.CheckpointManager(directory, options=options, item_names=names, item_handlers=handlers)


def save(manager, step: int, state, iterator=None, meta: dict | None = None, force: bool = False) -> bool:
    """Save `state` (a `rlp.TrainState`) as checkpoint `step` if due (or `force`)."""
    import orbax.checkpoint as ocp

    args = {name: ocp.args.StandardSave(getattr(state, name)) for name in _present(state)}
    args["train"] = ocp.args.StandardSave({"step": state.step, "rng": jax.random.key_data(state.rng)})
    args["meta"] = ocp.args.JsonSave(meta or {})
    if iterator is not None:
        import grain

        args["iter"] = grain.checkpoint.CheckpointSave(iterator)
    return manager.save(step, args=ocp.args.Composite(**args), force=force)


def _present(state) -> tuple[str, ...]:
    """The state items this run has (`ref_params` only with a KL reference)."""
    return tuple(name for name in STATE_ITEMS if getattr(state, name) is not None)


def _abstract(tree, shardings):
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def restore(manager, state_like, shardings, iterator=None, step: int | None = None):
    """`(state, step)` from checkpoint `step` (default latest); `iterator` is restored in place.

    `state_like` gives structure, shapes and dtypes (e.g. `jax.eval_shape` of init);
    `shardings` (a matching `TrainState` of shardings) places every array.
    """
    import orbax.checkpoint as ocp

    step = manager.latest_step() if step is None else step
    if step is None:
        raise UserError(f"no checkpoint in {manager.directory}")
    key_data = jax.eval_shape(jax.random.key_data, state_like.rng)
    args = {name: ocp.args.StandardRestore(_abstract(getattr(state_like, name), getattr(shardings, name)))
            for name in _present(state_like)}
    args["train"] = ocp.args.StandardRestore(_abstract(
        {"step": state_like.step, "rng": key_data}, {"step": shardings.step, "rng": shardings.rng}))
    if iterator is not None:
        import grain

        args["iter"] = grain.checkpoint.CheckpointRestore(iterator)
    try:
        out = manager.restore(step, args=ocp.args.Composite(**args))
    except Exception as err:  # orbax / tensorstore raise many types for damaged or mismatched files
        raise UserError(f"cannot restore checkpoint {step} from {manager.directory}: {one_line(err)}") from None
    rng = jax.random.wrap_key_data(out["train"]["rng"])  # keys are made with the default impl
    state = state_like.replace(**{name: out[name] for name in _present(state_like)}, step=out["train"]["step"],
                               rng=rng)
    return state, step


def read_meta(manager, step: int) -> dict:
    import orbax.checkpoint as ocp

    return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]


def checkpoint_dir(path: str) -> str:
    """A run directory's `checkpoints/`, or `path` itself if it already is one."""
    nested = os.path.join(path, "checkpoints")
    return nested if os.path.isdir(nested) else path


def restore_params(path: str, which: str = "params", mesh=None, rules=None, step: int | None = None):
    """`(model_cfg, params)` of a run's checkpoint (`which`: params | ema_params), onto `mesh`.

    For evaluation: only that item is read, and each array is placed with the sharding the
    target mesh gives it (default: one device), whatever mesh or device count wrote it.
    """
    import flax.linen as nn
    import orbax.checkpoint as ocp

    from rlp_jax.train import config as config_lib
    from rlp_jax.model import transformer as model
    from rlp_jax.model import sharding

    if which not in ("params", "ema_params"):
        raise UserError(f"which must be 'params' or 'ema_params', got {which!r}")
    directory = checkpoint_dir(path)
    if not os.path.isdir(directory):
        raise UserError(f"checkpoint directory not found: {directory}")
    manager = make_manager(directory, read_only=True)
    step = manager.latest_step() if step is None else step
    if step is None:
        raise UserError(f"no checkpoint in {directory}")
    cfg = config_lib.from_dict(read_meta(manager, step)["config"]).model
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.dtype(cfg.param_dtype)),
                          nn.unbox(model.abstract_params(cfg)))
    if mesh is None:
        device = jax.local_devices()[0]
        target = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(device), shapes)
    else:
        target = sharding.param_shardings(cfg, mesh, rules or sharding.DEFAULT_RULES)
    try:
        out = manager.restore(step, args=ocp.args.Composite(**{which: ocp.args.StandardRestore(_abstract(shapes, target))}))
    except Exception as err:
        raise UserError(f"cannot restore {which} of checkpoint {step} from {directory}: {one_line(err)}") from None
    manager.close()
    return cfg, out[which]
