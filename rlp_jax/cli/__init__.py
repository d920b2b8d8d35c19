"""The `rlp-jax` command: a thin dispatcher over one module per subcommand.

Each module `rlp_jax/cli/<name>_cmd.py` exposes `register(subparsers)`, which adds its parser
and sets `handler` to a function taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rlp_jax.errors import UserError, one_line, os_error_line


def subcommand_modules() -> list[str]:
    """Every `rlp_jax/cli/*_cmd.py`, so adding a subcommand never edits this file."""
    import pkgutil

    return sorted(f"{__name__}.{info.name}" for info in pkgutil.iter_modules(__path__)
                  if info.name.endswith("_cmd"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlp-jax", description="Reinforcement pre-training of language models in JAX."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in subcommand_modules():
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UserError as err:
        print(f"rlp-jax: error: {one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk or a read-only mount where we write: not a bug in us
        print(f"rlp-jax: error: {one_line(os_error_line(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rlp-jax: interrupted", file=sys.stderr)
        return 130
