"""Arguments and loading shared by the commands that read a model directory."""

from __future__ import annotations

import os

from rlp_jax.errors import UserError


def add_checkpoint_args(parser) -> None:
    parser.add_argument("--checkpoint", required=True, help="model directory (from convert/fetch)")
    parser.add_argument("--tokenizer", help="tokenizer file (default: the one in --checkpoint)")


def load_model_and_tokenizer(args):
    """(cfg, params, tokenizer), with the tokenizer checked against the embedding size."""
    from rlp_jax.model.io import load_model
    from rlp_jax.tokenizer import load_tokenizer

    cfg, params = load_model(args.checkpoint)
    tokenizer = load_tokenizer(args.tokenizer or args.checkpoint)
    if tokenizer.vocab_size > cfg.vocab_size:
        raise UserError(f"tokenizer has {tokenizer.vocab_size} tokens but the model embeds only {cfg.vocab_size}")
    return cfg, params, tokenizer


def read_text(args) -> str:
    """`--text` or the contents of `--file`."""
    if args.text is not None:
        return args.text
    if not os.path.isfile(args.file):
        raise UserError(f"text file not found: {args.file}")
    try:
        with open(args.file, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as err:
        raise UserError(f"{args.file} is not valid UTF-8: {err}") from None
