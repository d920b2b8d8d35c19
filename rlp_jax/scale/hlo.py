"""What a compiled program's HLO text says that its memory totals do not: the largest
values it holds, and which collectives run inside the rollout's decode loop (where a
parameter all-gather would repeat for every sampled token)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from rlp_jax.rollout.sampling import DECODE_SCOPE

COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
_COMPUTATION = re.compile(r"^(?:ENTRY )?%(\S+) .*\{$")
_INSTRUCTION = re.compile(r"^\s+(?:ROOT )?%(\S+) = (.+?) ([a-z][\w-]*)\(")
_CALLS = re.compile(r"(?:calls|to_apply|body|condition|true_computation|false_computation)=%([\w.-]+)")
_BRANCHES = re.compile(r"branch_computations=\{([^}]*)\}")
_ARRAY = re.compile(r"\b(pred|s8|u8|s16|u16|s32|u32|s64|u64|bf16|f16|f32|f64|c64|c128)\[([\d,]*)\]")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "f32": 4,
          "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16}


@dataclasses.dataclass(frozen=True)
class Instruction:
    name: str
    computation: str
    opcode: str
    shape: str  # the result type as written, e.g. "bf16[8,64]{...}" or a tuple
    bytes: int  # of its array results
    calls: tuple[str, ...]
    op_name: str


def _array_bytes(shape: str) -> int:
    total = 0
    for dtype, dims in _ARRAY.findall(shape):
        total += _BYTES[dtype] * int(np.prod([int(d) for d in dims.split(",") if d] or [1]))
    return total


def parse(text: str) -> list[Instruction]:
    """Every instruction of an HLO module's text, with the computations it calls."""
    out, computation = [], ""
    for line in text.splitlines():
        head = _COMPUTATION.match(line)
        if head:
            computation = head.group(1)
            continue
        match = _INSTRUCTION.match(line)
        if not match:
            continue
        name, shape, opcode = match.groups()
        calls = _CALLS.findall(line)
        for group in _BRANCHES.findall(line):
            calls += [c.strip().lstrip("%") for c in group.split(",") if c.strip()]
        op_name = _OP_NAME.search(line)
        out.append(Instruction(name, computation, opcode, shape, _array_bytes(shape), tuple(calls),
                               op_name.group(1) if op_name else ""))
    return out


def _reachable(instructions: list[Instruction], roots: list[str]) -> set[str]:
    calls: dict[str, set[str]] = {}
    for ins in instructions:
        calls.setdefault(ins.computation, set()).update(ins.calls)
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(calls.get(name, ()))
    return seen


def _kind(opcode: str) -> str | None:
    for kind in COLLECTIVES:
        if opcode == kind or opcode == f"{kind}-start":
            return kind
    return None


def weight_shapes(param_shapes, tensor: int) -> set[tuple[int, ...]]:
    """Every shape a parameter can have once gathered inside a program: whole, one layer of
    a stacked (scanned) tensor, and either with any dimension still split `tensor` ways."""
    out = set()
    for shape in param_shapes:
        for base in (tuple(shape), tuple(shape[1:])):
            variants = {base}
            for axis in range(len(base)):
                variants |= {v[:axis] + (v[axis] // tensor,) + v[axis + 1:] for v in variants
                             if tensor > 1 and v[axis] % tensor == 0}
            out |= variants
    return {s for s in out if len(s) >= 2}


def _result_dims(shape: str) -> tuple[int, ...] | None:
    arrays = _ARRAY.findall(shape)
    if len(arrays) != 1:
        return None
    return tuple(int(d) for d in arrays[0][1].split(",") if d)


def decode_loop_collectives(instructions: list[Instruction], weights: set = frozenset()) -> dict[str, int]:
    """`{"loops": n, kind: count, ...}`: collectives per kind inside the bodies of the n
    decode loops (the outermost while of `decode_loop`, and all it calls). All-gathers whose
    result has a parameter's shape (`weight_shapes`) are also counted as
    "parameter all-gather": weights fetched again for every token."""
    loops = [ins for ins in instructions if ins.opcode == "while" and ins.op_name.endswith(f"{DECODE_SCOPE}/while")]
    bodies = [c for ins in loops for c in ins.calls]
    inside = _reachable(instructions, bodies)
    counts = {"loops": len(loops)}
    for ins in instructions:
        kind = _kind(ins.opcode)
        if kind and ins.computation in inside:
            counts[kind] = counts.get(kind, 0) + 1
            if kind == "all-gather" and _result_dims(ins.shape) in weights:
                counts["parameter all-gather"] = counts.get("parameter all-gather", 0) + 1
    return counts


def largest_values(instructions: list[Instruction], count: int = 10) -> list[dict]:
    """The `count` largest results outside fused computations (fusion internals never
    exist in memory), each with the source operation that made it."""
    fused = _reachable(instructions, [c for ins in instructions if ins.opcode == "fusion" for c in ins.calls])
    rows = [ins for ins in instructions if ins.computation not in fused and ins.opcode not in _NOT_NEW]
    rows.sort(key=lambda ins: ins.bytes, reverse=True)
    return [{"bytes": ins.bytes, "shape": _largest_array(ins.shape), "op": ins.opcode,
             "source": _short(ins.op_name)} for ins in rows[:count]]


# Results that are other values seen again (a loop's carry, a call's, a tuple's parts).
_NOT_NEW = ("parameter", "get-tuple-element", "tuple", "bitcast", "constant", "while", "conditional", "call",
            "copy-done", "all-gather-done", "all-reduce-done", "collective-permute-done")


def _largest_array(shape: str) -> str:
    arrays = _ARRAY.findall(shape)
    if not arrays:
        return shape
    dtype, dims = max(arrays, key=lambda a: _array_bytes(f"{a[0]}[{a[1]}]"))
    return f"{dtype}[{dims}]" + (f" (+{len(arrays) - 1} more)" if len(arrays) > 1 else "")


def _short(op_name: str) -> str:
    """The tail of an op's name stack: where in our code it comes from."""
    parts = [p for p in op_name.split("/") if p and not p.startswith("jit(")]
    return "/".join(parts[-4:])
