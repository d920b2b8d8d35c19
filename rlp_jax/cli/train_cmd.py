"""`rlp-jax train --config FILE [section.key=value ...] [--init-from MODEL_DIR]`."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train with RLP (or the next-token baseline); resumes automatically")
    p.add_argument("--config", help="YAML config (see configs/); defaults apply to missing keys")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides such as rlp.group_size=8 run.steps=100")
    p.add_argument("--init-from", help="model directory from `rlp-jax convert` / `fetch` (same as init_from=DIR); "
                   "its architecture replaces the --config file's model section (dtype, remat, ... stay)")
    p.add_argument("--run-dir", help="same as run.run_dir=DIR")
    p.add_argument("--coordinator", help="multi-host: host:port of process 0 (distributed.coordinator_address)")
    p.add_argument("--num-processes", type=int, help="multi-host: number of processes")
    p.add_argument("--process-id", type=int, help="multi-host: this process's index")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from rlp_jax.errors import UserError
    from rlp_jax.train import loop as train

    overrides = list(args.overrides)
    typed = {text.split("=", 1)[0].strip() for text in overrides}
    for flag, key in (("init_from", "init_from"), ("run_dir", "run.run_dir"),
                      ("coordinator", "distributed.coordinator_address"),
                      ("num_processes", "distributed.num_processes"), ("process_id", "distributed.process_id")):
        value = getattr(args, flag)
        if value is not None:
            if key in typed:
                raise UserError(f"--{flag.replace('_', '-')} and {key}= both given; give only one")
            overrides.append(f"{key}={value}")
    return train.main(args.config, overrides)
