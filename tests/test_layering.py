"""The package's layering, read from the code's own imports (docs/architecture.md).

Lower layers never import higher ones, so each can be read, tested and reused alone:
the model knows nothing of rollouts or training, rollouts nothing of objectives, the
training core nothing of evaluation, and data nothing of the model.
"""

import ast
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(REPO, "rlp_jax")
FORBIDDEN = {
    "model": ("rollout", "objectives", "train", "evaluation"),
    "rollout": ("objectives", "train", "evaluation"),
    "objectives": ("train", "evaluation"),
    "train": ("evaluation",),
    "data": ("model",),
}
FLAT_ALLOWED = 4
MAX_LINES = 450


def _modules():
    for dirpath, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                yield os.path.relpath(path, PACKAGE), path


def _imported(path):
    """Every `rlp_jax.X...` module a file imports, at any depth (lazy imports count)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rlp_jax"):
            yield node.module
            for alias in node.names:
                yield f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("rlp_jax"):
                    yield alias.name


def test_the_checker_sees_imports():
    seen = set(_imported(os.path.join(PACKAGE, "train", "step.py")))
    assert "rlp_jax.objectives.base" in seen and "rlp_jax.train.state" in seen


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_import_reaches_up(layer):
    bad = []
    for rel, path in _modules():
        if rel.split(os.sep)[0] != layer:
            continue
        for module in _imported(path):
            parts = module.split(".")
            if len(parts) > 1 and parts[1] in FORBIDDEN[layer]:
                bad.append(f"{rel} imports {module}")
    assert not bad, "\n".join(bad)


def test_few_flat_modules_and_small_files():
    flat = [n for n in os.listdir(PACKAGE) if n.endswith(".py") and n not in ("__init__.py", "__main__.py")]
    assert len(flat) <= FLAT_ALLOWED, flat
    long = [f"{rel}: {n}" for rel, path in _modules()
            if (n := sum(1 for _ in open(path, encoding="utf-8"))) > MAX_LINES]
    assert not long, long


def test_nothing_points_outside_the_repository():
    pattern = re.compile(r"\.\./shared|DESIGN(\.md| §)")
    texts = [path for _, path in _modules()] + [os.path.join(REPO, "README.md")]
    texts += [os.path.join(REPO, "docs", n) for n in os.listdir(os.path.join(REPO, "docs"))]
    bad = [p for p in texts if pattern.search(open(p, encoding="utf-8").read())]
    assert not bad, bad
