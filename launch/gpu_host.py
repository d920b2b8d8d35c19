#!/usr/bin/env python3
"""Run `rlp-jax train` on one multi-GPU host: one process sees every local GPU and the
mesh spans them (mesh.fsdp=-1 by default). Installs JAX's CUDA plugin first.

  python launch/gpu_host.py --config configs/qwen3_1.7b_gpu.yaml --gpus 8 --dry-run
"""

from __future__ import annotations

import sys

from _common import LaunchError, base_parser, main, train_command


def parser():
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--gpus", type=int, default=8, help="GPUs to use (CUDA_VISIBLE_DEVICES=0..N-1)")
    p.add_argument("--cuda", default="cuda12", choices=("cuda12", "cuda13"), help="jax CUDA plugin extra")
    p.add_argument("--skip-install", action="store_true")
    p.add_argument("--log", default="train.log")
    return p


def build(args) -> list[str]:
    if args.gpus < 1:
        raise LaunchError("--gpus must be >= 1")
    cmds = [] if args.skip_install else [f"pip install -q -r requirements.txt -e . 'jax[{args.cuda}]'"]
    visible = ",".join(str(i) for i in range(args.gpus))
    cmds.append(f"CUDA_VISIBLE_DEVICES={visible} XLA_PYTHON_CLIENT_MEM_FRACTION=0.92 "
                f"{train_command(args.config, args.overrides)} 2>&1 | tee {args.log}")
    return cmds


if __name__ == "__main__":
    sys.exit(main(build, parser_fn=parser))
