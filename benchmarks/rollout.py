"""Prefix-shared vs re-encoding thought rollouts, and the time breakdown of one RLP step.

    python benchmarks/rollout.py [--window 512 --positions 8 --group 4 --thought 32 --batch 1]

A thin wrapper over `rlp_jax.bench` (tiny model, whatever device JAX sees); the full tool is
`rlp-jax bench --suite rollout,step --model tiny`.
"""

from __future__ import annotations

import argparse

from rlp_jax.bench import load_preset
from rlp_jax.bench import rollout, step
from rlp_jax.bench.rollout import Shape


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--positions", type=int, default=8)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--thought", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    shape = Shape(args.window, args.positions, args.group, args.thought, args.batch)
    cfg, params = load_preset("tiny")
    rollout.run(params, cfg, shape, sweep=None)
    step.run(params, cfg, shape)


if __name__ == "__main__":
    main()
