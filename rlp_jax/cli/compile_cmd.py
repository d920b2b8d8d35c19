"""`rlp-jax compile --config FILE --topology NAME [key=value ...]`: prove a config fits a
TPU slice (or GPU host) before paying for it, on any machine, CPU included."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    p = subparsers.add_parser("compile", help="compile a config's train and eval steps ahead of time for a TPU "
                                              "topology and report per-chip memory (exit 2: it does not fit)")
    p.add_argument("--config", required=True, help="YAML config (see configs/)")
    p.add_argument("--topology", required=True,
                   help="v4-N, v5p-N, v5e-N, v6e-N as Cloud TPU names slices (v5p-128 = 64 chips), "
                        "SxNAME for S slices (2xv5p-128), or h100x8 / h200x8 (needs the gpu-aot extra)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides such as rollout.group_size=8")
    p.add_argument("--no-eval", action="store_true", help="compile the training step only")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.add_argument("--force", action="store_true", help="overwrite --json FILE")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import sys

    from rlp_jax.errors import check_output_file, write_output
    from rlp_jax.scale import topology

    target = topology.parse(args.topology)
    if args.json:
        check_output_file(args.json, args.force, "--json")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # nothing runs here: the target's devices are abstract
    topology.quiet_libtpu(target)
    topology.gpu_flags(target)

    from rlp_jax import progress
    from rlp_jax.scale import compile as aot
    import jax

    from rlp_jax.scale import estimate, hlo, report, shapes
    from rlp_jax.train.config import load_config

    cfg, tokenizer, source = shapes.concrete(load_config(args.config, args.overrides))
    devices = topology.devices(target)
    bar = progress.bar(desc=f"compile for {target.name}", total=1 if args.no_eval else 2, unit="program")
    try:
        programs, state = aot.programs(cfg, tokenizer, devices, eval_step=not args.no_eval, done=bar.update)
    except aot.CompileError as err:
        bar.close()
        print(f"rlp-jax: error: {aot.explain(err, target)}", file=sys.stderr)
        return 2
    bar.close()
    weights = hlo.weight_shapes([leaf.shape for leaf in jax.tree.leaves(state.params)], mesh_tensor(state))
    figures = [report.program_figures(p, target.hbm_bytes, weights) for p in programs]
    header = {"config": args.config, "topology": target.name, "devices": target.devices, "chip": target.chip,
              "hbm": target.hbm_bytes, "model_source": source, "params": cfg.model.param_count(),
              "state": {part: report.shard_bytes(getattr(state, part)) for part in ("params", "opt_state", "ema_params")},
              "settings": aot.settings(cfg)}
    header["estimate_s"] = estimate.step_seconds(cfg, target.chip, target.devices, mesh_tensor(state))
    print(report.text(header, figures))
    if args.json:
        write_output(args.json, json.dumps({**header, "programs": figures}, indent=2))
    if not report.fits(figures):
        print(f"rlp-jax: error: {report.shortfall(figures, target.name)}", file=sys.stderr)
        return 2
    return 0


def mesh_tensor(state) -> int:
    """The size of the tensor axis of the mesh the state is laid out on."""
    import jax

    return dict(jax.tree.leaves(state.params)[0].sharding.mesh.shape)["tensor"]
