"""Per-chip figures of compiled programs, as a dict (for `--json`) and as text.

Peak per chip = arguments + outputs − what the outputs alias (the donated state) +
temporaries + code: what XLA's buffer assignment needs at once, the number that must stay
under the chip's HBM. A config fits when every program's peak leaves `HEADROOM`.
"""

from __future__ import annotations

import math

import jax

from rlp_jax.scale import hlo

GIB = 1024 ** 3
HEADROOM = 0.10  # of HBM left free: allocator fragmentation, the runtime, a data batch in flight


def shard_bytes(tree) -> int:
    """Bytes one device holds of a tree of sharded `ShapeDtypeStruct`s."""
    total = 0
    for leaf in jax.tree.leaves(tree):
        shape = leaf.sharding.shard_shape(leaf.shape) if leaf.sharding is not None else leaf.shape
        total += math.prod(shape) * leaf.dtype.itemsize
    return total


def program_figures(program, hbm_bytes: int, weights: set = frozenset()) -> dict:
    """Memory, FLOPs, largest values and decode-loop collectives of one `compile.Compiled`
    (`weights`: `hlo.weight_shapes` of the model, to tell parameter all-gathers apart)."""
    memory = program.compiled.memory_analysis()
    peak = (memory.argument_size_in_bytes + memory.output_size_in_bytes - memory.alias_size_in_bytes
            + memory.temp_size_in_bytes + memory.generated_code_size_in_bytes)
    cost = program.compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else (cost or {})
    instructions = hlo.parse(program.compiled.as_text())
    return {"program": program.name, "compile_s": round(program.seconds, 1),
            "arguments": memory.argument_size_in_bytes, "outputs": memory.output_size_in_bytes,
            "aliased": memory.alias_size_in_bytes, "temporaries": memory.temp_size_in_bytes,
            "code": memory.generated_code_size_in_bytes, "peak": peak, "hbm": hbm_bytes,
            "peak_fraction": peak / hbm_bytes, "flops": float(cost.get("flops", 0.0)),
            "bytes_accessed": float(cost.get("bytes accessed", 0.0)),
            "decode_loop_collectives": hlo.decode_loop_collectives(instructions, weights),
            "largest_values": hlo.largest_values(instructions)}


def fits(figures: list[dict]) -> bool:
    return all(f["peak_fraction"] <= 1.0 - HEADROOM for f in figures)


def shortfall(figures: list[dict], topology: str) -> str:
    """The one line naming what does not fit (the worst program)."""
    worst = max(figures, key=lambda f: f["peak_fraction"])
    limit = (1.0 - HEADROOM) * worst["hbm"]
    return (f"{worst['program']} does not fit {topology}: it needs {worst['peak'] / GIB:.1f} GiB per chip, "
            f"{(worst['peak'] - limit) / GIB:.1f} GiB over {int((1 - HEADROOM) * 100)}% of the chip's "
            f"{worst['hbm'] / GIB:.1f} GiB HBM (temporaries {worst['temporaries'] / GIB:.1f} GiB)")


def _gib(n: float) -> str:
    """Bytes in GiB, or MiB below one GiB (a small config's figures stay readable)."""
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / 2 ** 20:.1f} MiB"


def text(header: dict, figures: list[dict]) -> str:
    lines = [f"{header['config']} on {header['topology']}: {header['devices']} × {header['chip']}, "
             f"{_gib(header['hbm'])} HBM each; model from {header['model_source']} "
             f"({header['params'] / 1e6:,.1f}M parameters)",
             f"state per chip: params {_gib(header['state']['params'])}, optimizer "
             f"{_gib(header['state']['opt_state'])}, EMA {_gib(header['state']['ema_params'])}"]
    for f in figures:
        collectives = {k: v for k, v in f["decode_loop_collectives"].items() if k != "loops"}
        collectives.setdefault("parameter all-gather", 0)
        loops = f["decode_loop_collectives"].get("loops", 0)
        lines += ["", f"{f['program']}: compiled in {f['compile_s']:.0f} s",
                  f"  per chip: arguments {_gib(f['arguments'])}, temporaries {_gib(f['temporaries'])}, outputs "
                  f"{_gib(f['outputs'])} ({_gib(f['aliased'])} aliased), code {_gib(f['code'])}",
                  f"  peak {_gib(f['peak'])} = {f['peak_fraction'] * 100:.1f}% of HBM",
                  (f"  compiled FLOPs per chip {f['flops']:.3e} (XLA's count: loop bodies once)" if f["flops"]
                   else "  compiled FLOPs: not reported by this backend"),
                  f"  collectives inside the decode loop ({loops} loop{'s' if loops != 1 else ''}): "
                  + (", ".join(f"{n} {k}" for k, n in sorted(collectives.items())) or "none"),
                  "  largest values:"]
        lines += [f"    {_gib(v['bytes']):>12}  {v['shape']:<40} {v['op']:<12} {v['source']}"
                  for v in f["largest_values"]]
    if header.get("estimate_s"):
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in header["estimate_s"].items())
        lines += ["", f"step time ESTIMATE at spec-sheet peaks (a roofline from the FLOP/byte model, not a "
                      f"measurement): {phases}"]
    verdict = "fits" if fits(figures) else "does NOT fit"
    worst = max(f["peak_fraction"] for f in figures)
    lines += ["", f"{verdict}: largest peak {worst * 100:.1f}% of HBM (at most {int((1 - HEADROOM) * 100)}% "
                  f"leaves the {int(HEADROOM * 100)}% headroom)"]
    return "\n".join(lines)
