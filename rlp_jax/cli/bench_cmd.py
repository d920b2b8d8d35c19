"""`rlp-jax bench`: rollout, sampler and RLP-step figures for a named model preset (not a test)."""


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="benchmark rollouts, the sampler and one RLP step")
    p.add_argument("--model", default="tiny", help="tiny | smollm2-135m | qwen3-1.7b-shape")
    p.add_argument("--suite", default="all", help="rollout | sampler | step | all (comma-separated allowed)")
    p.add_argument("--quick", action="store_true", help="small shapes, short sweep: a fast CPU run")
    p.add_argument("--window", "-T", type=int, default=None, help="T of the base point")
    p.add_argument("--positions", "-K", type=int, default=None, help="K of the base point")
    p.add_argument("--group", "-G", type=int, default=None, help="G of the base point")
    p.add_argument("--thought", "-L", type=int, default=None, help="L of the base point")
    p.add_argument("--batch", type=int, default=None, help="windows per step (B) of the base point")
    p.add_argument("--no-sweep", action="store_true", help="rollout suite: the base point only")
    p.add_argument("--sampler-batch", type=int, default=None)
    p.add_argument("--prompt-len", type=int, default=None)
    p.add_argument("--new-tokens", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None, help="timed runs per figure (median)")
    p.add_argument("--out", default=None, help="write the JSON result here")
    p.add_argument("--markdown", default=None, help="write the Markdown tables here")
    p.add_argument("--force", action="store_true", help="overwrite existing --out / --markdown files")
    p.set_defaults(handler=run)


def run(args) -> int:
    import dataclasses
    import json

    from rlp_jax.bench import MODELS, SUITES, run_bench, to_markdown
    from rlp_jax.bench.rollout import FULL_BASE, QUICK_BASE
    from rlp_jax.errors import UserError, check_output_file, need, write_output

    # Outputs first: a benchmark that runs for minutes must not be lost on where it is written.
    need(not (args.out and args.out == args.markdown), "--out and --markdown name the same file")
    for flag, path in (("--out", args.out), ("--markdown", args.markdown)):
        if path:
            check_output_file(path, args.force, flag)
    if args.model not in MODELS:
        raise UserError(f"unknown bench model {args.model!r} (choose one of {', '.join(MODELS)})")
    suites = SUITES if args.suite == "all" else tuple(s.strip() for s in args.suite.split(","))
    bad = [s for s in suites if s not in SUITES]
    if bad:
        raise UserError(f"unknown bench suite(s) {', '.join(bad)} (choose from {', '.join(SUITES)}, all)")
    if args.repeats is not None and args.repeats < 1:
        raise UserError("--repeats must be >= 1")
    base = QUICK_BASE if args.quick else FULL_BASE
    overrides = {name: getattr(args, name) for name in ("window", "positions", "group", "thought", "batch")
                 if getattr(args, name) is not None}
    shape = dataclasses.replace(base, **overrides)
    sampler_shape = None
    if any(v is not None for v in (args.sampler_batch, args.prompt_len, args.new_tokens)):
        default = (1, 16, 8) if args.quick else (4, 64, 64)
        sampler_shape = tuple(d if v is None else v for v, d in
                              zip((args.sampler_batch, args.prompt_len, args.new_tokens), default))
    result = run_bench(args.model, suites, quick=args.quick, shape=shape, sweep=not args.no_sweep,
                       sampler_shape=sampler_shape, repeats=args.repeats)
    markdown = to_markdown(result)
    print()
    print(markdown)
    if args.out:
        write_output(args.out, json.dumps(result, indent=2))
    if args.markdown:
        write_output(args.markdown, markdown + "\n")
    return 0
