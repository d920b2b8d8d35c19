"""`rlp-jax eval`: accuracy, NLL, thinking and reasoning accuracy, information gain by difficulty."""


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="evaluate a model directory or training checkpoint")
    p.add_argument("--checkpoint", required=True, help="model directory, run directory, its checkpoints dir, or one step there (RUN/checkpoints/4)")
    p.add_argument("--params", choices=["policy", "ema"], default="policy",
                   help="which parameters of a training checkpoint (policy θ or EMA teacher φ)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", help="TFDS data dir from `rlp-jax data prepare` (default for a run: its own data)")
    source.add_argument("--text-file", help="a UTF-8 text file, cut into consecutive windows")
    p.add_argument("--split", default="validation")
    p.add_argument("--tokenizer", help="tokenizer (default: the checkpoint's)")
    p.add_argument("--seq-len", type=int, help="window length (default: a run's data.seq_len, else 256)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--proxy", help="what defines difficulty (top-16 entropy): 'ema' (the run's EMA "
                                   "teacher), 'self' (the evaluated model), or a model dir / checkpoint "
                                   "(default: a run's init_from base model, else the evaluated model)")
    p.add_argument("--think", action="store_true", help="also roll out thoughts (thinking accuracy, gain)")
    p.add_argument("--rpt", action="store_true",
                   help="also RPT's reasoning accuracy: think, then a \\boxed{} prediction scored by prefix "
                        "match (implies --think; needs a tokenizer with EOS)")
    p.add_argument("--positions", type=int, default=4, help="thinking positions per window")
    p.add_argument("--group-size", type=int, default=2, help="thoughts per position")
    p.add_argument("--thought-len", type=int, help="max thought tokens (default: a run's rollout.thought_len, else 32)")
    p.add_argument("--min-context", type=int,
                   help="tokens of its own document a thinking position needs before it (default: a run's "
                        "rollout.min_context, else min(16, seq_len / 2))")
    p.add_argument("--temperature", type=float, help="default: a run's rollout.temperature, else 0.7")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--show", type=int, default=0, metavar="N",
                   help="with --think: print N sample thoughts of the first batch (context, thought, target, "
                        "prediction, reward)")
    p.add_argument("--out", default="eval", help="directory for eval.json and eval.png")
    p.add_argument("--force", action="store_true", help="overwrite eval.json and eval.png in --out")
    p.set_defaults(handler=run)


def run(args) -> int:
    import json
    import os

    from rlp_jax.evaluation import evaluate
    from rlp_jax.errors import UserError, check_output_dir, need_finite, write_output, writing
    from rlp_jax.evaluation.inputs import (base_model, dataset_batches, load_params, resolve_tokenizer,
                                           run_config, text_file_batches)
    from rlp_jax.evaluation.reasoning import Reasoning
    from rlp_jax.rollout.config import RolloutConfig

    if (args.seq_len is not None and args.seq_len < 2) or args.batch_size < 1 or args.batches < 1:
        raise UserError("need --seq-len >= 2, --batch-size >= 1 and --batches >= 1")
    if args.show < 0 or (args.show and not (args.think or args.rpt)):
        raise UserError("--show N prints sample thoughts: it needs --think (and N >= 0)")
    if args.temperature is not None:
        need_finite(args.temperature, "--temperature", 0.0)
    outputs = ("eval.json", "eval.png")
    check_output_dir(args.out, args.force, outputs)  # before the evaluation, not after it
    cfg, params, tok_path, run_data, step = load_params(args.checkpoint, args.params, with_step=True)
    run_settings(args, run_config(args.checkpoint))
    data_dir = args.data or run_data
    if not (data_dir or args.text_file):
        raise UserError("pass --data DATA_DIR or --text-file FILE (only a run directory brings its own data)")
    tokenizer, tok_path = resolve_tokenizer(args.tokenizer, tok_path, cfg)
    if args.seq_len > cfg.max_seq_len:
        raise UserError(f"--seq-len ({args.seq_len}) exceeds the model's max_seq_len ({cfg.max_seq_len})")
    proxy, proxy_name = _proxy(args, load_params, base_model)
    print(f"difficulty proxy: {proxy_name}", flush=True)
    rcfg, reasoning = None, None
    if args.think or args.rpt:
        if not 1 <= args.min_context < args.seq_len:
            raise UserError(f"--min-context must be in [1, --seq-len) = [1, {args.seq_len}), got {args.min_context}")
        rcfg = RolloutConfig(group_size=args.group_size, positions_per_window=args.positions,
                             thought_len=args.thought_len, temperature=args.temperature,
                             min_context=args.min_context, **args.markers).with_markers(tokenizer)
        rcfg.check(args.seq_len, cfg.vocab_size, cfg.max_seq_len)
    if args.rpt:
        if tokenizer.eos_id is None:
            raise UserError("--rpt needs a tokenizer with an end-of-sequence token (completions end there)")
        reasoning = Reasoning(rcfg, tokenizer)
        reasoning.rcfg.check(args.seq_len, cfg.vocab_size, cfg.max_seq_len)
    def batches_of(count):
        if args.text_file:
            return text_file_batches(args.text_file, tokenizer, args.seq_len, args.batch_size, count)
        return dataset_batches(data_dir, tok_path, args.split, args.seq_len, args.batch_size, count)

    batches = batches_of(args.batches)
    result = evaluate.evaluate_batches(params, cfg, batches, rcfg, proxy, seed=args.seed, reasoning=reasoning,
                                       total=args.batches)
    result["checkpoint"] = os.path.abspath(args.checkpoint)
    result["step"] = step  # the checkpoint read (a damaged or not-good newer one is passed over); None: a model dir
    result["proxy"] = proxy_name
    result["params"] = args.params
    result["settings"] = {"seq_len": args.seq_len, "batch_size": args.batch_size, "batches": args.batches,
                          **({} if rcfg is None else {
                              "positions": args.positions, "group_size": args.group_size,
                              "thought_len": args.thought_len, "min_context": args.min_context,
                              "temperature": args.temperature, "open_ids": list(rcfg.open_ids),
                              "close_ids": list(rcfg.close_ids), "seed": args.seed})}
    with writing(args.out):
        os.makedirs(args.out, exist_ok=True)
    write_output(os.path.join(args.out, outputs[0]), json.dumps(result, indent=2))
    with writing(os.path.join(args.out, outputs[1])):
        evaluate.plot_eval(result, os.path.join(args.out, outputs[1]))
    print(json.dumps(result["all"], indent=2))
    print(f"wrote {os.path.join(args.out, 'eval.json')} and eval.png")
    if rcfg is not None and not result["all"].get("information_gain_count"):
        print(f"no thinking position: no window had a token with --min-context {args.min_context} tokens of "
              "its own document before it (short documents: lower --min-context, or raise --seq-len)")
    if args.show:
        _show(args, params, cfg, rcfg, tokenizer, batches_of(1))
    return 0


def run_settings(args, run_cfg) -> None:
    """Fill the window and rollout settings not given on the command line: from the run's own
    config when `--checkpoint` is a run (its documents, thoughts and markers are what it was
    trained on), else the defaults for a model directory."""
    rollout = run_cfg.rollout if run_cfg is not None else None
    own = {"seq_len": run_cfg.data.seq_len if run_cfg is not None else 256,
           "thought_len": rollout.thought_len if rollout is not None and rollout.thought_len >= 1 else 32,
           "temperature": rollout.temperature if rollout is not None else 0.7}
    for name, value in own.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.min_context is None:
        args.min_context = rollout.min_context if rollout is not None else min(16, args.seq_len // 2)
    args.markers = ({} if rollout is None else
                    {k: getattr(rollout, k) for k in ("open_ids", "close_ids", "open_text", "close_text")})


def _show(args, params, cfg, rcfg, tokenizer, first) -> None:
    """`--show`: thoughts of the first batch, drawn as the eval drew that batch's (same key,
    uniform positions); the reward is measured against the model's own no-think score."""
    import contextlib

    import jax
    import jax.numpy as jnp

    from rlp_jax.rollout.window import from_batch
    from rlp_jax.train.thought_samples import sample_thoughts_jit
    from rlp_jax.train.thought_text import format_example, rows

    with contextlib.closing(first):
        window = jax.tree.map(jnp.asarray, from_batch(next(first)))
    rcfg = rcfg.replace(position_strategy="uniform")
    count = min(args.show, window.shape[0] * rcfg.positions_per_window * rcfg.group_size)
    key = jax.random.split(jax.random.key(args.seed))[1]  # `evaluate_batches`' key of its first batch
    out = jax.device_get(sample_thoughts_jit(params, params, window, key, cfg=cfg, rollout=rcfg, count=count))
    shown = rows(out, tokenizer, None)
    print(f"\nsample thoughts ({len(shown)} of the first batch):\n")
    print("\n\n".join(format_example(row, baseline="S_no_think") for row in shown))


def _proxy(args, load_params, base_model):
    """`((params, cfg) or None for the evaluated model, description)`. Difficulty should come
    from a fixed model (RPT §4.1): by default a run is measured against its base model."""
    import os

    if args.proxy == "ema":
        proxy_cfg, proxy_params, _, _ = load_params(args.checkpoint, "ema")
        return (proxy_params, proxy_cfg), "the run's EMA teacher"
    if args.proxy == "self":
        return None, "the evaluated model (--proxy self)"
    path = args.proxy or base_model(args.checkpoint)
    if not path:
        return None, "the evaluated model (no base model known; pass --proxy)"
    proxy_cfg, proxy_params, _, _ = load_params(path, "policy")
    why = "--proxy" if args.proxy else "the run's init_from base model"
    return (proxy_params, proxy_cfg), f"{os.path.abspath(path)} ({why})"
