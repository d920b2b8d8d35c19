"""`rlp-jax downstream`: multiple-choice and exact-match generation tasks from local JSONL."""


def register(subparsers) -> None:
    p = subparsers.add_parser("downstream", help="evaluate on a local multiple-choice or generation task")
    p.add_argument("--checkpoint", required=True, help="model directory, run directory or checkpoints dir")
    p.add_argument("--params", choices=["policy", "ema"], default="policy")
    p.add_argument("--tokenizer", help="tokenizer (default: the checkpoint's)")
    p.add_argument("--task", required=True, help="JSONL file (format: see README / rlp_jax/downstream.py)")
    p.add_argument("--type", choices=["mc", "gen"], required=True, help="multiple choice or generation")
    p.add_argument("--normalize", action="store_true", help="mc: length-normalised log-likelihood")
    p.add_argument("--think", action="store_true", help="gen: open a thought before answering")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--prompt-suffix", default="\nAnswer:")
    p.add_argument("--out", help="write the result JSON here")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    p.set_defaults(handler=run)


def run(args) -> int:
    import json

    from rlp_jax.evaluation import downstream
    from rlp_jax.errors import UserError, check_output_file, write_output
    from rlp_jax.evaluation.inputs import load_params, resolve_tokenizer

    if args.max_new_tokens < 1:
        raise UserError("--max-new-tokens must be >= 1")
    if args.out:
        check_output_file(args.out, args.force)
    items = downstream.read_task(args.task, args.type)  # validate the file before loading a model
    cfg, params, tok_path, _ = load_params(args.checkpoint, args.params)
    tokenizer, _ = resolve_tokenizer(args.tokenizer, tok_path, cfg)
    if args.type == "mc":
        result = downstream.multiple_choice(params, cfg, tokenizer, items, args.normalize, args.prompt_suffix)
    else:
        result = downstream.generation(params, cfg, tokenizer, items, args.max_new_tokens, args.think,
                                       args.prompt_suffix)
    result.update(task=args.task, type=args.type)
    text = json.dumps(result, indent=2)
    if args.out:
        write_output(args.out, text)
    print(text)
    return 0
