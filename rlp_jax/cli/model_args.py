"""Arguments and loading shared by `score` and `sample`: they read a model the way `eval`
and `export` do (a model directory, a run directory or its checkpoints dir)."""

from __future__ import annotations

from rlp_jax.errors import UserError, need_file


def add_checkpoint_args(parser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="model directory (from convert/fetch), run directory or checkpoints dir")
    parser.add_argument("--params", choices=["policy", "ema"], default="policy",
                        help="which parameters of a training checkpoint (policy θ or EMA teacher φ)")
    parser.add_argument("--tokenizer", help="tokenizer file (default: the checkpoint's)")


def load_model_and_tokenizer(args):
    """(cfg, params, tokenizer), the tokenizer checked against the model (see resolve_tokenizer)."""
    from rlp_jax.evaluation.inputs import load_params, resolve_tokenizer

    cfg, params, tok_path, _ = load_params(args.checkpoint, args.params)
    tokenizer, _ = resolve_tokenizer(args.tokenizer, tok_path, cfg)
    return cfg, params, tokenizer


def read_text(args) -> str:
    """`--text` or the contents of `--file`."""
    if args.text is not None:
        return args.text
    need_file(args.file, "text file")
    try:
        with open(args.file, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as err:
        raise UserError(f"{args.file} is not valid UTF-8: {err}") from None
