"""Shared by the launch scripts: argument parsing of the train command, printing or running
shell commands, and one-line errors. `--dry-run` prints exactly what would run."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys


class LaunchError(Exception):
    """A user mistake: printed as one line, exit code 2."""


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", required=True, help="config YAML inside the repository, e.g. configs/qwen3_1.7b_v5p.yaml")
    p.add_argument("--dry-run", action="store_true", help="print the exact commands instead of running them")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides passed to rlp-jax train")
    return p


def check_overrides(overrides: list[str]) -> None:
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise LaunchError(f"override {item!r} must look like section.key=value")


def train_command(config: str, overrides: list[str], extra: list[str] = ()) -> str:
    return shlex.join(["rlp-jax", "train", "--config", config, *overrides, *extra])


def execute(commands: list[str], dry_run: bool) -> int:
    """Print (dry run) or run each shell command in order, stopping at the first failure."""
    for command in commands:
        if dry_run:
            print(command)
            continue
        print(f"+ {command}", flush=True)
        code = subprocess.call(command, shell=True)
        if code:
            print(f"launch: error: command failed with exit code {code}: {command}", file=sys.stderr)
            return code
    return 0


def main(build, argv=None, parser_fn=None) -> int:
    """Parse, build the command list, print or run it; LaunchError → one line, exit 2."""
    parser = parser_fn()
    args = parser.parse_args(argv)
    try:
        check_overrides(args.overrides)
        commands = build(args)
    except LaunchError as err:
        print(f"launch: error: {err}", file=sys.stderr)
        return 2
    return execute(commands, args.dry_run)
