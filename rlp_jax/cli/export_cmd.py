"""`rlp-jax export --checkpoint DIR --to-hf OUT`: safetensors + config.json + tokenizer."""


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a model as an HF transformers directory")
    p.add_argument("--checkpoint", required=True, help="model directory, run directory, its checkpoints dir, or one step there (RUN/checkpoints/4)")
    p.add_argument("--params", choices=["policy", "ema"], default="policy",
                   help="which parameters of a training checkpoint (policy θ or EMA teacher φ)")
    p.add_argument("--to-hf", required=True, dest="out", help="output directory")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.set_defaults(handler=run)


def run(args) -> int:
    import os

    from rlp_jax.convert.hf_export import export_hf
    from rlp_jax.evaluation.inputs import load_params
    from rlp_jax.tokenizer import load_tokenizer

    cfg, params, tok_path, _ = load_params(args.checkpoint, args.params)
    has_tokenizer = bool(tok_path) and (os.path.isfile(tok_path) or any(
        os.path.exists(os.path.join(tok_path, name)) for name in ("tokenizer.json", "tokenizer.model")))
    tokenizer = load_tokenizer(tok_path) if has_tokenizer else None
    print(export_hf(cfg, params, args.out, tokenizer, args.dtype))
    return 0
