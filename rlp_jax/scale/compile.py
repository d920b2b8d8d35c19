"""Lower and compile a config's training and eval steps for abstract devices.

The programs are the ones `rlp-jax train` runs (`make_train_step`, `make_eval_step`) on a
mesh built from the config's `mesh:` section over the target's devices; their inputs are
`ShapeDtypeStruct`s carrying the shardings training would give them, so nothing is
allocated and no weights or data are read.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import time

import jax
import jax.numpy as jnp

from rlp_jax.errors import UserError
from rlp_jax.model import sharding
from rlp_jax.model import transformer as model_lib
from rlp_jax.rollout.window import Window
from rlp_jax.train.config import TrainConfig


@dataclasses.dataclass
class Compiled:
    """One compiled program and what compiling it took."""

    name: str
    compiled: object
    seconds: float


def abstract(tree, shardings):
    """`ShapeDtypeStruct`s of `tree` (arrays or shapes) laid out as `shardings`."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def _compile(name: str, fn, mesh, *args) -> Compiled:
    start = time.perf_counter()
    with jax.sharding.use_mesh(mesh) if hasattr(jax.sharding, "use_mesh") else mesh:
        lowered = fn.lower(*args)
    try:
        compiled = lowered.compile()
    except Exception as err:  # XLA's RESOURCE_EXHAUSTED and friends: the caller reports them
        raise CompileError(name, err) from None
    return Compiled(name, compiled, time.perf_counter() - start)


class CompileError(Exception):
    """XLA refused a program (most often: it does not fit the chip's memory)."""

    def __init__(self, program: str, err: Exception):
        super().__init__(str(err))
        self.program = program


def programs(cfg: TrainConfig, tokenizer, devices, eval_step: bool = True, done=lambda: None):
    """Compile the training step (and the eval step) of `cfg` for `devices`:
    `(programs, abstract train state)`; `done()` is called after each program."""
    from rlp_jax.objectives import make_objective
    from rlp_jax.train import setup as train_setup
    from rlp_jax.train.heldout import make_eval_step
    from rlp_jax.train.state import init_state
    from rlp_jax.train.step import make_train_step

    mesh = sharding.make_mesh(cfg.mesh, devices=devices)
    train_setup.check_mesh(cfg, mesh, 1)
    if cfg.run.objective == "rpt":
        raise UserError("rlp-jax compile: run.objective=rpt scores on the host between two programs; "
                        "compiling it ahead of time is not supported yet")
    objective = make_objective(cfg.run.objective, cfg.model, cfg.rollout, cfg.rlp, cfg.rpt, tokenizer)
    init = functools.partial(init_state, ocfg=cfg.optimizer, reference=objective.needs_reference)
    state_like = jax.eval_shape(lambda k: init(model_lib.init_params(cfg.model, k), rng=k), jax.random.key(0))
    step, shardings = make_train_step(objective, cfg.optimizer, cfg.ema_decay, state_like, mesh,
                                      skip_nonfinite=cfg.run.nonfinite == "skip",
                                      max_update_ratio=cfg.run.max_update_ratio)
    state = abstract(state_like, shardings)
    tokens = jax.ShapeDtypeStruct((cfg.data.batch_size, cfg.data.seq_len), jnp.int32,
                                  sharding=sharding.batch_sharding(mesh, 2))
    window = Window(tokens=tokens, segment_ids=tokens, positions=tokens)  # packed, as training feeds it
    out = [_compile("train step", step, mesh, state, window)]
    done()
    if eval_step:
        evaluate = make_eval_step(cfg.model, cfg.rollout, cfg.run.objective == "rlp", mesh, shardings.params)
        key = jax.ShapeDtypeStruct(state_like.rng.shape, state_like.rng.dtype, sharding=sharding.replicated(mesh))
        out.append(_compile("eval step", evaluate, mesh, state.params, state.params, window, key))
        done()
    return out, state


def settings(cfg: TrainConfig) -> dict:
    """The settings that size the step, for the report."""
    r, loss = cfg.rollout, getattr(cfg, cfg.run.objective, None)
    out = {"objective": cfg.run.objective, "B": cfg.data.batch_size, "T": cfg.data.seq_len,
           "mesh": {"data": cfg.mesh.data, "fsdp": cfg.mesh.fsdp, "tensor": cfg.mesh.tensor},
           "dtype": cfg.model.dtype, "remat": cfg.model.remat}
    if cfg.run.objective in ("rlp", "rpt"):
        out.update(K=r.positions_per_window, G=r.group_size, L=r.thought_len)
    if loss is not None and hasattr(loss, "grad_accumulation"):
        out.update(grad_accumulation=loss.grad_accumulation, minibatches=loss.minibatches)
    return out


# XLA:TPU's two phrasings of "does not fit" (buffer assignment, and the temporaries check).
_USED = (re.compile(r"Used ([\d.]+[KMGT]?) of ([\d.]+[KMGT]?) hbm", re.IGNORECASE),
         re.compile(r"HLO temporaries \(([\d.]+[KMGT]?)\) exceeds available HBM \(([\d.]+[KMGT]?)\)"))


def _binary(size: str) -> str:
    """XLA's "219.42G" (binary units) as "219.42 GiB"."""
    return f"{size[:-1]} {size[-1]}iB" if size[-1:] in "KMGT" else f"{size} B"


def explain(err: CompileError, target) -> str:
    """One line for a program XLA refused: the memory it asked for, else XLA's first line."""
    text = str(err)
    for pattern in _USED:
        used = pattern.search(text)
        if used:
            need, have = (_binary(x) for x in used.groups())
            return (f"{err.program} does not fit {target.name}: XLA needs {need} per chip "
                    f"({'HLO temporaries' if 'temporaries' in pattern.pattern else 'in all'}) of the chip's "
                    f"{have} HBM")
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(err).__name__)
    return f"{err.program} does not compile for {target.name}: {first[:300]}"
