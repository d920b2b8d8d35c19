"""`rlp-jax report RUN_DIR [RUN_DIR ...]`: curves over steps and FLOPs, power-law fits."""

CURVE_KEYS = ["train/reward_mean", "eval/info_gain", "eval/acc_think/all", "eval/acc_no_think/all",
              "eval/nll", "train/loss"]
FIT_KEYS = ("eval/acc_think", "eval/acc_no_think")


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="plots and scaling-curve fits from run directories")
    p.add_argument("runs", nargs="+", help="run directories (with metrics.jsonl and config.yaml)")
    p.add_argument("--out", default="report", help="directory for the PNGs and fits.json")
    p.add_argument("--force", action="store_true", help="overwrite the PNGs and fits.json in --out")
    p.set_defaults(handler=run)


def step_cost(run_dir: str) -> tuple[float, float]:
    """`(FLOPs, tokens)` per training step of a run, rollouts included, from its resolved
    config: matmul FLOPs, and the RLP paper's token count (App. 11; B·T for NTP)."""
    import os

    from rlp_jax.train import config as config_lib
    from rlp_jax.evaluation import flops

    cfg = config_lib.from_dict(config_lib.read_yaml(os.path.join(run_dir, "config.yaml")))
    data, rollout = cfg.data, cfg.rollout
    if cfg.run.objective == "ntp":
        return flops.ntp_step_flops(cfg.model, data.batch_size, data.seq_len), float(data.batch_size * data.seq_len)
    markers = max(len(rollout.open_ids) + len(rollout.close_ids), 2)
    loss = getattr(cfg, cfg.run.objective)
    shape = (data.batch_size, data.seq_len, rollout.positions_per_window, rollout.group_size, rollout.thought_len)
    step = flops.rlp_step_flops(cfg.model, *shape, markers, loss.updates_per_rollout,
                                loss.minibatches * loss.grad_accumulation, loss.kl_beta > 0)["total"]
    return step, flops.paper_tokens(*shape, marker_len=markers)


def step_flops(run_dir: str) -> float:
    """Training FLOPs per step of a run, rollouts included."""
    return step_cost(run_dir)[0]


def run(args) -> int:
    import json
    import os

    from rlp_jax.errors import UserError, check_output_dir, write_output, writing
    from rlp_jax.rollout.positions import BUCKETS
    from rlp_jax.evaluation.report import fit_power_law
    from rlp_jax.train.metrics import plot_curves, read_metrics, series

    outputs = [f"curves_{x_axis}.png" for x_axis in ("step", "flops")] + ["fits.json"]
    check_output_dir(args.out, args.force, outputs)
    runs, tokens = {}, {}
    for run_dir in args.runs:
        label = os.path.basename(os.path.normpath(run_dir))
        if label in runs:
            label = os.path.normpath(run_dir)
        per_step, tokens[label] = step_cost(run_dir)
        runs[label] = (read_metrics(run_dir), per_step)
    with writing(args.out):
        os.makedirs(args.out, exist_ok=True)
    written = []
    for x_axis, name in zip(("step", "flops"), outputs):
        path = os.path.join(args.out, name)
        with writing(path):
            if plot_curves(runs, CURVE_KEYS, path, x_axis=x_axis):
                written.append(path)
    fits = {}
    for label, (records, per_step) in runs.items():
        for prefix in FIT_KEYS:
            for bucket, _ in BUCKETS:
                key = f"{prefix}/{bucket}"
                steps, values = series(records, key)
                if steps.size < 4:
                    continue
                try:
                    fits[f"{label}:{key}"] = fit_power_law(steps * per_step, values)
                except UserError as err:
                    fits[f"{label}:{key}"] = {"error": str(err)}
    write_output(os.path.join(args.out, "fits.json"), json.dumps(
        {"flops_per_step": {k: v[1] for k, v in runs.items()}, "paper_tokens_per_step": tokens, "fits": fits},
        indent=2))
    for name, fit in fits.items():
        if "error" in fit:
            print(f"{name}: {fit['error']}")
        else:
            print(f"{name}: P(C) = {fit['A']:.4g} / C^{fit['alpha']:.4g} + {fit['P_star']:.4g} "
                  f"(rmse {fit['rmse']:.3g})")
    if not fits:
        print("no accuracy series with >= 4 evaluations: nothing to fit (raise run.steps or lower run.eval_every)")
    for path in written:
        print(f"wrote {path}")
    print(f"wrote {os.path.join(args.out, 'fits.json')}")
    return 0
