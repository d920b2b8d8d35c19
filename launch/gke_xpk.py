#!/usr/bin/env python3
"""Run `rlp-jax train` as a GKE workload with xpk (TPU slices, optionally multi-slice):
xpk builds an image from this checkout on a base image, schedules one pod per host, and
JAX initializes multi-host itself. Logs: `xpk workload list` and `kubectl logs`.

  python launch/gke_xpk.py --cluster rlp --workload rlp-8b --tpu-type v5p-512 \
      --config configs/qwen3_8b_v5p_pod.yaml --dry-run
"""

from __future__ import annotations

import re
import sys

from _common import LaunchError, base_parser, main, train_command


def parser():
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--cluster", required=True)
    p.add_argument("--workload", required=True, help="lower-case name, letters, digits and dashes")
    p.add_argument("--tpu-type", required=True, help="e.g. v5p-512")
    p.add_argument("--num-slices", type=int, default=1)
    p.add_argument("--project")
    p.add_argument("--zone")
    p.add_argument("--base-image", default="python:3.11-slim")
    p.add_argument("--create-cluster", action="store_true", help="create the GKE cluster first")
    return p


def build(args) -> list[str]:
    if not re.fullmatch(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?", args.workload):
        raise LaunchError(f"--workload {args.workload!r} must be lower-case letters, digits and dashes")
    if args.num_slices < 1:
        raise LaunchError("--num-slices must be >= 1")
    where = "".join(f" --{k}={v}" for k, v in (("project", args.project), ("zone", args.zone)) if v)
    cmds = []
    if args.create_cluster:
        cmds.append(f"xpk cluster create --cluster={args.cluster} --tpu-type={args.tpu_type} "
                    f"--num-slices={args.num_slices}{where}")
    train = train_command(args.config, args.overrides, [f"run.run_dir=/tmp/{args.workload}"])
    inner = f"pip install -q -r requirements.txt -e . 'jax[tpu]' && {train}"
    cmds.append(f"xpk workload create --cluster={args.cluster} --workload={args.workload} "
                f"--tpu-type={args.tpu_type} --num-slices={args.num_slices}{where} "
                f"--base-docker-image={args.base_image} --script-dir=. --command=\"{inner}\"")
    cmds.append(f"xpk workload list --cluster={args.cluster}{where} --filter-by-job={args.workload}")
    return cmds


if __name__ == "__main__":
    sys.exit(main(build, parser_fn=parser))
