#!/usr/bin/env python3
"""Run `rlp-jax train` on a Cloud TPU pod slice: create a TPU VM (or a queued resource),
copy this checkout to every worker, install it, start training on all workers at once
(multi-host initialization is automatic on TPU pods), then collect the logs.

  python launch/tpu_pod.py --name rlp --zone us-east5-a --accelerator v5p-128 \
      --config configs/qwen3_1.7b_v5p.yaml run.checkpoint_dir=gs://BUCKET/run --dry-run
"""

from __future__ import annotations

import re
import shlex
import sys

from _common import LaunchError, base_parser, main, train_command

RUNTIME = {"v4": "tpu-ubuntu2204-base", "v5p": "v2-alpha-tpuv5", "v5litepod": "v2-alpha-tpuv5-lite",
           "v6e": "v2-alpha-tpuv6e"}
CHIPS_PER_HOST = {"v4": 4, "v5p": 4, "v5litepod": 4, "v6e": 4}
TARBALL = "rlp_jax_src.tar.gz"


def workers(accelerator: str) -> int:
    """Hosts in a slice: v4/v5p names count TensorCores (2 per chip), v5e/v6e count chips."""
    m = re.fullmatch(r"(v4|v5p|v5litepod|v6e)-(\d+)", accelerator)
    if not m:
        raise LaunchError(f"--accelerator {accelerator!r} is not like v5p-128, v4-32, v5litepod-16 or v6e-64")
    family, count = m.group(1), int(m.group(2))
    chips = count // 2 if family in ("v4", "v5p") else count
    return max(1, chips // CHIPS_PER_HOST[family])


def parser():
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="TPU VM / queued resource name")
    p.add_argument("--zone", required=True)
    p.add_argument("--project", help="GCP project (default: gcloud's)")
    p.add_argument("--accelerator", required=True, help="e.g. v5p-128")
    p.add_argument("--runtime", help="TPU software version (default per generation)")
    p.add_argument("--queued", action="store_true", help="request capacity through a queued resource")
    p.add_argument("--spot", action="store_true", help="spot / preemptible capacity (SIGTERM → checkpoint)")
    p.add_argument("--skip-create", action="store_true", help="the TPU VM exists already")
    p.add_argument("--run-dir", default="runs/tpu", help="run directory on each worker (logs, metrics)")
    return p


def build(args) -> list[str]:
    n = workers(args.accelerator)
    family = args.accelerator.split("-")[0]
    runtime = args.runtime or RUNTIME[family]
    where = f"--zone={args.zone}" + (f" --project={args.project}" if args.project else "")
    cmds = []
    if not args.skip_create:
        if args.queued:
            cmds.append(f"gcloud compute tpus queued-resources create {args.name} --node-id={args.name} {where} "
                        f"--accelerator-type={args.accelerator} --runtime-version={runtime}"
                        + (" --spot" if args.spot else ""))
            cmds.append(f"until gcloud compute tpus queued-resources describe {args.name} {where} "
                        f"--format='value(state.state)' | grep -q ACTIVE; do sleep 30; done")
        else:
            cmds.append(f"gcloud compute tpus tpu-vm create {args.name} {where} "
                        f"--accelerator-type={args.accelerator} --version={runtime}" + (" --spot" if args.spot else ""))
    ssh = f"gcloud compute tpus tpu-vm ssh {args.name} {where} --worker=all --command="
    cmds.append(f"git archive --format=tar.gz -o /tmp/{TARBALL} HEAD")
    cmds.append(f"gcloud compute tpus tpu-vm scp /tmp/{TARBALL} {args.name}:~/ {where} --worker=all")
    install = (f"mkdir -p rlp_jax && tar xzf {TARBALL} -C rlp_jax && cd rlp_jax && "
               f"pip install -q -r requirements.txt -e . 'jax[tpu]'")
    cmds.append(ssh + shlex.quote(install))
    train = train_command(args.config, args.overrides, [f"run.run_dir={args.run_dir}"])
    cmds.append(ssh + shlex.quote(f"cd rlp_jax && {train} > train.log 2>&1"))
    cmds.append(f"mkdir -p logs/{args.name}")
    for i in range(n):
        cmds.append(f"gcloud compute tpus tpu-vm scp {args.name}:~/rlp_jax/train.log logs/{args.name}/worker{i}.log "
                    f"{where} --worker={i}")
    cmds.append(f"gcloud compute tpus tpu-vm scp --recurse {args.name}:~/rlp_jax/{args.run_dir} logs/{args.name}/ "
                f"{where} --worker=0")
    return cmds


if __name__ == "__main__":
    sys.exit(main(build, parser_fn=parser))
