#!/usr/bin/env python3
"""Run `rlp-jax train` as a SLURM multi-node GPU job: one process per node, node 0 is the
coordinator, each process passes its rank explicitly (no reliance on auto-detection).
Writes the batch script and submits it with sbatch.

  python launch/slurm.py --nodes 4 --gpus-per-node 8 --config configs/qwen3_1.7b_gpu.yaml --dry-run
"""

from __future__ import annotations

import shlex
import sys

from _common import LaunchError, base_parser, main, train_command

PORT = 12355


def parser():
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--gpus-per-node", type=int, default=8)
    p.add_argument("--partition")
    p.add_argument("--time", default="24:00:00")
    p.add_argument("--job-name", default="rlp-jax")
    p.add_argument("--script", default="rlp_jax_job.sbatch", help="where to write the batch script")
    return p


def script(args) -> str:
    if args.nodes < 1 or args.gpus_per_node < 1:
        raise LaunchError("--nodes and --gpus-per-node must be >= 1")
    lines = ["#!/bin/bash", f"#SBATCH --job-name={args.job_name}", f"#SBATCH --nodes={args.nodes}",
             "#SBATCH --ntasks-per-node=1", f"#SBATCH --gpus-per-node={args.gpus_per_node}",
             f"#SBATCH --time={args.time}", "#SBATCH --output=%x-%j.log", "#SBATCH --signal=TERM@120"]
    if args.partition:
        lines.append(f"#SBATCH --partition={args.partition}")
    train = train_command(args.config, args.overrides)
    lines += ["set -euo pipefail",
              'export HEAD=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
              "srun --kill-on-bad-exit=1 bash -c " + shlex.quote(
                  f"{train} --coordinator=$HEAD:{PORT} --num-processes=$SLURM_NTASKS --process-id=$SLURM_PROCID")]
    return "\n".join(lines) + "\n"


def build(args) -> list[str]:
    text = script(args)
    return [f"cat > {shlex.quote(args.script)} <<'SBATCH'\n{text}SBATCH", f"sbatch {shlex.quote(args.script)}"]


if __name__ == "__main__":
    sys.exit(main(build, parser_fn=parser))
