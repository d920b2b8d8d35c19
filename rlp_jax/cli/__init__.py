"""The `rlp-jax` command: a thin dispatcher over one module per subcommand.

Each module `rlp_jax/cli/<name>_cmd.py` exposes `register(subparsers)`, which adds its parser
and sets `handler` to a function taking the parsed arguments and returning an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rlp_jax import progress
from rlp_jax.errors import UserError, one_line, os_error_line


def subcommand_modules() -> list[str]:
    """Every `rlp_jax/cli/*_cmd.py`, so adding a subcommand never edits this file."""
    import pkgutil

    return sorted(f"{__name__}.{info.name}" for info in pkgutil.iter_modules(__path__)
                  if info.name.endswith("_cmd"))


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and exit 2) like every other user mistake;
    the usage itself is one `--help` away. Subcommand parsers inherit the class."""

    def error(self, message: str):
        progress.close_all()
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="rlp-jax", description="Reinforcement pre-training of language models in JAX."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in subcommand_modules():
        importlib.import_module(name).register(subparsers)
    _add_quiet(subparsers)
    return parser


def _add_quiet(subparsers) -> None:
    """`--quiet` on every (sub-)subcommand, so no module has to remember it."""
    for parser in set(subparsers.choices.values()):  # aliases map to the same parser
        # SUPPRESS: a nested parser's unset default must not undo `data --quiet prepare`.
        parser.add_argument("--quiet", "-q", action="store_true", default=argparse.SUPPRESS,
                            help="no progress bars (they are drawn only when stderr is a terminal)")
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_quiet(action)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    progress.set_quiet(getattr(args, "quiet", False))
    progress.silence_library_warnings()
    try:
        return int(args.handler(args) or 0)
    except UserError as err:
        progress.close_all()
        print(f"rlp-jax: error: {one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk or a read-only mount where we write: not a bug in us
        progress.close_all()
        print(f"rlp-jax: error: {one_line(os_error_line(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        progress.close_all()
        print("rlp-jax: interrupted", file=sys.stderr)
        return 130
