"""Run checkpoints: one Orbax `CheckpointManager` per run directory.

A checkpoint at step s holds the state after s optimizer steps and the data iterator
positioned after s batches, as separate items so evaluation can read only what it needs:
  params, ema_params, opt_state   (Orbax StandardSave; restore onto any mesh)
  ref_params                      θ_0, only when the run keeps a fixed KL reference
  train                           step and the raw rng key data
  iter                            the Grain iterator state (one file per process)
  meta                            JSON: the resolved config, `good` and `confirmed` (see
                                  `retention`), so a checkpoint is self-describing
Saves are asynchronous (arrays are copied to host, then written in the background) and
atomic (a step directory appears only when complete), so a crash or a full disk mid-save
never replaces the last complete checkpoint; the next writer removes the leftover temporary
directory. Orbax keeps every step and saves when told: the cadence (every `every` steps,
not also the first one as Orbax's default policy would) and retention are ours.

Reading tolerates damage: `newest_restorable` tries the good checkpoints newest first and
passes over one whose files are truncated or missing (`is_damage`), and the caller says so
in one line; any other read error is one line, and nothing is renamed for it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import traceback

import jax
import jax.numpy as jnp

from rlp_jax.errors import UserError

STATE_ITEMS = ("params", "ema_params", "opt_state", "ref_params")
ITEMS = STATE_ITEMS + ("train", "iter", "meta")
STEP_FILE = "_CHECKPOINT_METADATA"  # what Orbax writes into every complete step directory


def _has_grain() -> bool:
    try:
        import grain  # noqa: F401
        return True
    except ImportError:
        return False


# ----------------------------------------------------------------------------- quiet failures


# The ERROR records Orbax logs (with tracebacks) as a save fails, in the background thread,
# its futures and the manager's wait: the same error then reaches the caller.
_SAVE_FAILED = re.compile(r"background save thread|_SignalingThread\.run\(\) raised|Save Finalize thread|"
                          r"Checkpointer failed")


class _OrbaxLogFilter(logging.Filter):
    """Orbax's INFO and WARNING records are dropped, and so are the ERROR records of a failed
    save (hundreds of lines of tracebacks on a full disk), whose error reaches the caller,
    which reports it in one line. Other ERROR records stay visible."""

    def filter(self, record: logging.LogRecord) -> bool:
        if f"{os.sep}orbax{os.sep}" not in record.pathname:
            return True
        return record.levelno >= logging.ERROR and not _SAVE_FAILED.search(str(record.msg))


class _OrbaxAsyncioFilter(logging.Filter):
    """A failed save leaves Orbax's write futures with their exception unread; asyncio logs
    each one ("exception was never retrieved", a traceback) when it is collected, often at
    exit, after the caller reported the error in one line. A future is Orbax's when its
    traceback runs through Orbax or its error names a temporary checkpoint directory (a
    TensorStore write future carries no Python frames)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "exception was never retrieved" not in str(record.msg) or not record.exc_info:
            return True
        _, exc, tb = record.exc_info
        through_orbax = tb is not None and any(
            f"{os.sep}orbax{os.sep}" in frame.filename for frame in traceback.extract_tb(tb))
        return not (through_orbax or ".orbax-checkpoint-tmp" in str(exc))


def _orbax_leftover(unraisable) -> bool:
    """A failed restore ends Orbax's asyncio loop while TensorStore reads are still pending:
    their completions report "Event loop is closed", and the abandoned read coroutines their
    own errors, as unraisable exceptions (tracebacks on stderr) after the error was handled."""
    exc, code = unraisable.exc_value, getattr(unraisable.object, "cr_code", None)
    if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
        return True
    return code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename


def _ignore_orbax_leftovers(previous):
    def hook(unraisable):
        if not _orbax_leftover(unraisable):
            previous(unraisable)
    hook.rlp_jax = True
    return hook


def _quiet() -> None:
    for name, kind in (("absl", _OrbaxLogFilter), ("asyncio", _OrbaxAsyncioFilter)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())
    if not getattr(sys.unraisablehook, "rlp_jax", False):
        sys.unraisablehook = _ignore_orbax_leftovers(sys.unraisablehook)


def reason(err: BaseException) -> str:
    """A short one-line cause: the OS error, else the TensorStore status line without its spec dump."""
    chain, seen = [], err
    while seen is not None and len(chain) < 8:
        chain.append(" ".join(str(seen).split()))
        seen = seen.__cause__ or seen.__context__
    text = next((t for t in chain if re.match(r"[A-Z_]{4,}: ", t)), chain[0]) or type(err).__name__
    code = re.search(r"os_error_code='?(\d+)", text)
    if code:  # a file system error (a full disk): its own words say it best
        return f"{os.strerror(int(code.group(1)))} (errno {code.group(1)})"
    for cut in (" [tensorstore_spec", " See full TensorStore details", " [source locations"):
        text = text.split(cut)[0]
    return text if len(text) <= 240 else text[:237] + "..."


# ----------------------------------------------------------------------------- manager, save


def make_manager(directory: str, every: int = 1, async_save: bool = True, read_only: bool = False):
    """An Orbax manager over `directory` with our items and handlers. It keeps every step:
    retention is not Orbax's business (it cannot tell a good checkpoint from a bad one), it
    is `retention.Ledger`'s."""
    import orbax.checkpoint as ocp

    _quiet()
    handlers = {name: ocp.StandardCheckpointHandler() for name in STATE_ITEMS + ("train",)}
    handlers["meta"] = ocp.JsonCheckpointHandler()
    names = STATE_ITEMS + ("train", "meta")
    if _has_grain():
        import grain

        handlers["iter"] = grain.checkpoint.CheckpointHandler()
        names = names + ("iter",)
    policy = None if read_only else ocp.checkpoint_managers.FixedIntervalPolicy(every)
    options = ocp.CheckpointManagerOptions(save_interval_steps=0 if read_only else every, save_decision_policy=policy,
                                           enable_async_checkpointing=async_save, read_only=read_only,
                                           create=not read_only, cleanup_tmp_directories=not read_only)
    if not directory.startswith("gs://"):
        directory = os.path.abspath(directory)
    return ocp.CheckpointManager(directory, options=options, item_names=names, item_handlers=handlers)


def has_checkpoints(directory: str) -> bool:
    """Whether `directory` holds any checkpoint step (readable or not), without opening one."""
    if "://" not in directory:
        return os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))
    manager = make_manager(directory, read_only=True)
    try:
        return bool(manager.all_steps())
    finally:
        manager.close()


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


# ----------------------------------------------------------------------------- restore


def restore(manager, state_like, shardings, iterator=None, step: int | None = None):
    """`(state, step)` from checkpoint `step` (default latest); `iterator` is restored in place.

    `state_like` gives structure, shapes and dtypes (e.g. `jax.eval_shape` of init);
    `shardings` (a matching `TrainState` of shardings) places every array.
    """
    step = manager.latest_step() if step is None else step
    if step is None:
        raise UserError(f"no checkpoint in {manager.directory}")
    try:
        return restore_state(manager, state_like, shardings, iterator, step), step
    except Exception as err:  # orbax / tensorstore raise many types for damaged or mismatched files
        raise UserError(f"cannot restore checkpoint {step} from {manager.directory}: {reason(err)}") from None


def restore_state(manager, state_like, shardings, iterator, step: int):
    """The state of checkpoint `step`; Orbax's and TensorStore's own errors pass through."""
    import orbax.checkpoint as ocp

    key_data = jax.eval_shape(jax.random.key_data, state_like.rng)
    args = {name: ocp.args.StandardRestore(_abstract(getattr(state_like, name), getattr(shardings, name)))
            for name in _present(state_like)}
    args["train"] = ocp.args.StandardRestore(_abstract(
        {"step": state_like.step, "rng": key_data}, {"step": shardings.step, "rng": shardings.rng}))
    if iterator is not None:
        import grain

        args["iter"] = grain.checkpoint.CheckpointRestore(iterator)
    out = manager.restore(step, args=ocp.args.Composite(**args))
    rng = jax.random.wrap_key_data(out["train"]["rng"])  # keys are made with the default impl
    return state_like.replace(**{name: out[name] for name in _present(state_like)}, step=out["train"]["step"],
                              rng=rng)


def read_meta(manager, step: int) -> dict:
    import orbax.checkpoint as ocp

    return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]


_DAMAGE = re.compile(r"\b(NOT_FOUND|DATA_LOSS|OUT_OF_RANGE)\b|not found|manifest|No such file")


def is_damage(err: BaseException) -> bool:
    """A clear sign of lost or half-written files (missing, truncated, not JSON); anything
    else (a permission, a bug, a mismatch) is not taken for damage."""
    seen, depth = err, 0
    while seen is not None and depth < 8:
        if isinstance(seen, (FileNotFoundError, json.JSONDecodeError, EOFError)) or _DAMAGE.search(str(seen)):
            return True
        seen, depth = seen.__cause__ or seen.__context__, depth + 1
    return False


def unreadable(err: BaseException, what: str) -> UserError:
    """What a read error that is not damage becomes: one line; nothing is renamed."""
    return UserError(f"cannot read {what}: {reason(err)}")


def read_metas(manager) -> dict[int, dict | str]:
    """Each checkpoint's meta, or (a damaged one) the reason it cannot be read; a good one
    that a divergence found unconfirmed is returned marked not good (`retention.demoted`)."""
    from rlp_jax.train import retention

    metas: dict[int, dict | str] = {}
    for step in manager.all_steps():
        try:
            metas[step] = read_meta(manager, step)
        except Exception as err:
            if not is_damage(err):
                raise unreadable(err, f"checkpoint {step} in {manager.directory}") from None
            metas[step] = reason(err)
    for step, bad in retention.demoted(metas).items():
        metas[step] = dict(metas[step], good=False, bad_reason=f"unconfirmed before the divergence checkpoint {bad} records")
    return metas


def is_good(meta: dict | str) -> bool:
    """Readable and not marked bad (checkpoints from before `good` existed count as good)."""
    return isinstance(meta, dict) and bool(meta.get("good", True))


def newest_restorable(manager, metas: dict[int, dict | str], attempt, step: int | None = None):
    """`(step, attempt(step, meta), passed)`: the newest good checkpoint that `attempt` restores.

    `passed` lists `(step, why)` for newer ones passed over (not good, or damaged: `attempt`
    raised an error `is_damage` recognizes; any other error is the user's to fix and ends
    the search in one line, renaming nothing); the caller tells the user in one line. With `step`, only that checkpoint.
    """
    directory = manager.directory
    if step is not None:
        if step not in metas:
            listed = ", ".join(map(str, sorted(metas))) or "none"
            raise UserError(f"no checkpoint step {step} in {directory} (steps there: {listed})")
        if isinstance(metas[step], str):
            raise UserError(f"checkpoint {step} in {directory} is damaged: {metas[step]}")
        return step, attempt(step, metas[step]), []
    if not metas:
        raise UserError(f"no checkpoint in {directory}")
    passed = []
    for s in sorted(metas, reverse=True):
        meta = metas[s]
        if isinstance(meta, str):
            passed.append((s, f"is damaged ({meta})"))
        elif not is_good(meta):
            passed.append((s, f"is marked not good ({meta.get('bad_reason', 'diverged')})"))
        else:
            try:
                return s, attempt(s, meta), passed
            except UserError:
                raise
            except Exception as err:
                if not is_damage(err):
                    raise unreadable(err, f"checkpoint {s} in {directory}") from None
                passed.append((s, f"is damaged ({reason(err)})"))
    raise UserError(f"no restorable good checkpoint in {directory}: {describe(passed)}")


def describe(passed) -> str:
    return "; ".join(f"checkpoint {s} {why}" for s, why in passed)


def set_aside(manager, passed) -> list[str]:
    """Rename the step directories in `passed` to `<step>.damaged` / `<step>.diverged` (Orbax
    ignores those names), so a resumed run can write those steps again; nothing is deleted."""
    from etils import epath
    from orbax.checkpoint import multihost

    moved = []
    for s, why in passed:
        suffix = "damaged" if why.startswith("is damaged") else "diverged"
        source = epath.Path(manager.directory) / str(s)
        target = source.parent / f"{s}.{suffix}"
        n = 1
        while target.exists():
            n += 1
            target = source.parent / f"{s}.{suffix}-{n}"
        if jax.process_index() == 0:
            source.rename(target)
        moved.append(str(target))
    multihost.sync_global_processes("rlp_jax:set_aside")
    manager.reload()
    return moved


# ----------------------------------------------------------------------------- evaluation


def locate(path: str) -> tuple[str, int | None]:
    """`(checkpoints directory, step or None)` of a run directory, its `checkpoints/`, or one
    step directory in it (`RUN/checkpoints/4` picks step 4)."""
    nested = os.path.join(path, "checkpoints")
    if os.path.isdir(nested):
        return nested, None
    name = os.path.basename(os.path.normpath(path))
    if name.isdigit() and os.path.isfile(os.path.join(path, STEP_FILE)):
        return os.path.dirname(os.path.normpath(path)), int(name)
    return path, None


def warn(text: str) -> None:
    """A one-line warning on stderr (process 0 only), as the training loop and `load` give them."""
    if jax.process_index() == 0:
        print(f"rlp-jax: warning: {text}", file=sys.stderr, flush=True)


def load(path: str, which: str = "params", mesh=None, rules=None, step: int | None = None):
    """`(step, meta, model_cfg, params)` of a run's newest good restorable checkpoint (or of
    the step `path` or `step` names), `which` (params | ema_params) placed onto `mesh`.

    For evaluation: only that item is read, and each array is placed with the sharding the
    target mesh gives it (default: one device), whatever mesh or device count wrote it.
    A damaged or not-good newer checkpoint is passed over with a one-line warning.
    """
    import flax.linen as nn
    import orbax.checkpoint as ocp

    from rlp_jax.model import sharding
    from rlp_jax.model import transformer as model
    from rlp_jax.train import config as config_lib

    if which not in ("params", "ema_params"):
        raise UserError(f"which must be 'params' or 'ema_params', got {which!r}")
    directory, named = locate(path)
    if not os.path.isdir(directory):
        raise UserError(f"checkpoint directory not found: {directory}")

    def attempt(s, meta):
        cfg = config_lib.from_dict(meta["config"]).model
        shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.dtype(cfg.param_dtype)),
                              nn.unbox(model.abstract_params(cfg)))
        if mesh is None:
            device = jax.local_devices()[0]
            target = jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(device), shapes)
        else:
            target = sharding.param_shardings(cfg, mesh, rules or sharding.DEFAULT_RULES)
        try:
            out = manager.restore(s, args=ocp.args.Composite(**{which: ocp.args.StandardRestore(_abstract(shapes, target))}))
        except Exception as err:
            if named is not None or step is not None:
                raise UserError(f"cannot restore {which} of checkpoint {s} from {directory}: {reason(err)}") from None
            raise
        return cfg, out[which]

    manager = make_manager(directory, read_only=True)
    try:
        metas = read_metas(manager)
        s, (cfg, params), passed = newest_restorable(manager, metas, attempt, step if step is not None else named)
    finally:
        manager.close()
    if passed:
        warn(f"{describe(passed)}; using checkpoint {s}")
    return s, metas[s], cfg, params


def restore_params(path: str, which: str = "params", mesh=None, rules=None, step: int | None = None):
    """`(model_cfg, params)` of `load`."""
    _, _, cfg, params = load(path, which, mesh, rules, step)
    return cfg, params


def run_meta(path: str) -> dict:
    """The meta (resolved config) of the checkpoint `load` would pick, without its arrays."""
    directory, named = locate(path)
    if not os.path.isdir(directory):
        raise UserError(f"checkpoint directory not found: {directory}")
    manager = make_manager(directory, read_only=True)
    try:
        metas = read_metas(manager)
        _, meta, _ = newest_restorable(manager, metas, lambda s, m: m, named)
    finally:
        manager.close()
    return meta
