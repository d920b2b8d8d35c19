"""`rlp-jax convert --from gguf:PATH|hf:DIR --out DIR`."""

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("convert", help="import GGUF or HF safetensors weights as an rlp-jax model")
    p.add_argument("--from", dest="source", required=True, help="gguf:PATH or hf:DIR")
    p.add_argument("--out", required=True, help="output model directory (must not hold a model yet)")
    p.add_argument("--force", action="store_true", help="replace a model already in --out")
    p.add_argument("--param-dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--no-scan-layers", action="store_true", help="store layers unstacked")
    p.set_defaults(handler=run)


def run(args) -> int:
    from rlp_jax.convert import convert

    summary = convert(args.source, args.out, param_dtype=args.param_dtype,
                      scan_layers=not args.no_scan_layers, force=args.force)
    print(json.dumps(summary, indent=2))
    return 0
