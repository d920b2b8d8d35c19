"""Prefix-shared thought rollouts vs re-encoding every prefix (docs/architecture.md), same thoughts.

Both paths get the same params, window, positions and key, so they must sample the same
thoughts; the bench checks that before it reports a time. To time full-length thoughts, the
close marker's embedding row is zeroed (its logit is exactly 0) and sampling is restricted
to the top-8 tokens, so the close marker is (practically) never sampled on random weights;
the mean thought length is reported so a short run is visible.
"""

from __future__ import annotations

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from rlp_jax import progress
from rlp_jax.bench.common import median_time
from rlp_jax.errors import UserError
from rlp_jax.model.config import ModelConfig
from rlp_jax.rollout.positions import choose_positions
from rlp_jax.rollout.reference import reference_rollout_jit
from rlp_jax.rollout.config import RolloutConfig
from rlp_jax.rollout.thoughts import rollout_thoughts_jit


@dataclasses.dataclass(frozen=True)
class Shape:
    window: int  # T
    positions: int  # K
    group: int  # G
    thought: int  # L
    batch: int = 1  # B

    def as_dict(self) -> dict:
        return {"T": self.window, "K": self.positions, "G": self.group, "L": self.thought, "B": self.batch,
                "N": self.batch * self.positions * self.group}


FULL_BASE = Shape(window=1024, positions=8, group=4, thought=64)
QUICK_BASE = Shape(window=128, positions=2, group=2, thought=8)
FULL_SWEEP = {"T": (256, 512, 2048), "K": (2, 4, 16), "G": (2, 8), "L": (16, 32, 128)}
QUICK_SWEEP = {"T": (64,), "K": (4,), "G": (4,), "L": (16,)}
_FIELD = {"T": "window", "K": "positions", "G": "group", "L": "thought"}


def forcing_setup(params, cfg: ModelConfig, shape: Shape, temperature: float = 1.0):
    """`(params, rcfg)` with open = V−2, close = V−1 and the close marker made unsampleable."""
    vocab = cfg.vocab_size
    if vocab < 16:
        raise UserError(f"the rollout bench needs a vocabulary of at least 16 tokens, got {vocab}")
    for name, value in dataclasses.asdict(shape).items():
        if not isinstance(value, int) or value < 1:
            raise UserError(f"bench: {name} must be a positive integer, got {value!r}")
    if shape.group < 2:
        raise UserError(f"bench: G must be >= 2, got {shape.group}")
    rcfg = RolloutConfig(group_size=shape.group, positions_per_window=shape.positions, thought_len=shape.thought,
                         temperature=temperature, top_k=8, open_ids=(vocab - 2,), close_ids=(vocab - 1,),
                         min_context=min(16, max(shape.window - shape.positions, 1)))
    rcfg.check(shape.window, vocab, cfg.max_seq_len)
    inner = params["params"]
    if cfg.tie_embeddings:
        table = inner["embed"]["embedding"]
        inner = {**inner, "embed": {**inner["embed"], "embedding": table.at[vocab - 1].set(0)}}
    else:
        kernel = inner["lm_head"]["kernel"]
        inner = {**inner, "lm_head": {**inner["lm_head"], "kernel": kernel.at[:, vocab - 1].set(0)}}
    return {**params, "params": inner}, rcfg


def bench_point(params, cfg: ModelConfig, shape: Shape, repeats: int = 3, seed: int = 0,
                phase=lambda name: None) -> dict:
    """Time both rollouts at one shape; check they sample the same thoughts. `phase(name)`
    is told what runs next (for the progress bar)."""
    params, rcfg = forcing_setup(params, cfg, shape)
    keys = jax.random.split(jax.random.key(seed), 3)
    window = jax.random.randint(keys[0], (shape.batch, shape.window), 0, cfg.vocab_size - 2)
    t = choose_positions(keys[1], jnp.zeros(window.shape), rcfg)

    def fast():
        return rollout_thoughts_jit(params, cfg, rcfg, window, t, keys[2])

    def ref():
        return reference_rollout_jit(params, cfg, rcfg, window, t, keys[2])

    phase("compiling prefix-shared")
    a = fast()
    phase("compiling re-encoding")
    b = ref()
    equal = bool(np.array_equal(np.asarray(a.thoughts), np.asarray(b.thoughts))
                 and np.array_equal(np.asarray(a.lengths), np.asarray(b.lengths)))
    if not equal:
        message = (f"prefix-shared and re-encoding rollouts sampled different thoughts at {shape.as_dict()} "
                   f"(dtype {cfg.dtype})")
        if cfg.dtype == "float32":
            raise AssertionError(message)
        warnings.warn(message + ": low-precision rounding differs between the two paths", stacklevel=2)
    phase("timing prefix-shared")
    fast_s = median_time(fast, repeats)
    phase("timing re-encoding")
    ref_s = median_time(ref, repeats)
    return {**shape.as_dict(), "prefix_shared_s": fast_s, "reencode_s": ref_s, "ratio": ref_s / fast_s,
            "thoughts_equal": equal, "mean_thought_len": float(np.mean(np.asarray(a.lengths))),
            "s_pred_max_abs_diff": float(np.max(np.abs(np.asarray(a.s_pred) - np.asarray(b.s_pred))))}


def run(params, cfg: ModelConfig, base: Shape, sweep: dict[str, tuple[int, ...]] | None, repeats: int = 3,
        log=print) -> dict:
    """The base point, then each of T, K, G, L varied alone around it."""
    points = [("base", base)]
    for axis, values in (sweep or {}).items():
        points += [(axis, dataclasses.replace(base, **{_FIELD[axis]: v})) for v in values
                   if v != getattr(base, _FIELD[axis])]
    rows = []
    bar = progress.bar(desc="bench rollout", total=len(points), unit="point")
    for axis, shape in points:
        row = {"axis": axis, **bench_point(params, cfg, shape, repeats,
                                           phase=lambda name, axis=axis: bar.set_postfix_str(f"{axis}: {name}"))}
        bar.update()
        rows.append(row)
        log(f"rollout {axis:>4} T={row['T']} K={row['K']} G={row['G']} L={row['L']} B={row['B']}: "
            f"prefix-shared {row['prefix_shared_s'] * 1e3:.1f} ms, re-encoding {row['reencode_s'] * 1e3:.1f} ms, "
            f"ratio {row['ratio']:.2f}x, equal={row['thoughts_equal']}, mean len {row['mean_thought_len']:.1f}")
    bar.close()
    return {"base": base.as_dict(), "rows": rows}
