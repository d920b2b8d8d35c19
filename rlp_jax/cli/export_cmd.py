"""`rlp-jax export --checkpoint DIR --to-hf OUT`: safetensors + config.json + tokenizer."""


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a model as an HF transformers directory")
    p.add_argument("--checkpoint", required=True, help="model directory")
    p.add_argument("--to-hf", required=True, dest="out", help="output directory")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.set_defaults(handler=run)


def run(args) -> int:
    import os

    from rlp_jax.convert.hf_export import export_hf
    from rlp_jax.model_io import load_model
    from rlp_jax.tokenizer import load_tokenizer

    cfg, params = load_model(args.checkpoint)
    has_tokenizer = any(os.path.exists(os.path.join(args.checkpoint, name))
                        for name in ("tokenizer.json", "tokenizer.model"))
    tokenizer = load_tokenizer(args.checkpoint) if has_tokenizer else None
    print(export_hf(cfg, params, args.out, tokenizer, args.dtype))
    return 0
