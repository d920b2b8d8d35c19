"""`rlp-jax export --checkpoint DIR --to-hf OUT`: safetensors + config.json + tokenizer."""


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a model as an HF transformers directory")
    p.add_argument("--checkpoint", required=True, help="model directory, run directory, its checkpoints dir, or one step there (RUN/checkpoints/4)")
    p.add_argument("--params", choices=["policy", "ema"], default="policy",
                   help="which parameters of a training checkpoint (policy θ or EMA teacher φ)")
    p.add_argument("--to-hf", required=True, dest="out", help="output directory")
    p.add_argument("--force", action="store_true", help="replace files of an earlier export in the directory")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.set_defaults(handler=run)


def run(args) -> int:
    from rlp_jax.convert.hf_export import HF_DIR_FILES, export_hf
    from rlp_jax.errors import check_output_dir
    from rlp_jax.evaluation.inputs import load_params
    from rlp_jax.tokenizer import find_tokenizer, load_tokenizer

    check_output_dir(args.out, args.force, HF_DIR_FILES, "--to-hf")  # before loading anything
    cfg, params, tok_path, _ = load_params(args.checkpoint, args.params)
    tok_file = find_tokenizer(tok_path)
    tokenizer = load_tokenizer(tok_file) if tok_file else None
    print(export_hf(cfg, params, args.out, tokenizer, args.dtype, force=args.force))
    return 0
