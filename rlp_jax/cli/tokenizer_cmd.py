"""`rlp-jax tokenizer train`: a sentencepiece tokenizer from a prepared corpus."""

from __future__ import annotations

import argparse

from rlp_jax.errors import UserError


def register(subparsers) -> None:
    parser = subparsers.add_parser("tokenizer", help="train tokenizers")
    sub = parser.add_subparsers(dest="tokenizer_command", metavar="ACTION")
    sub.required = True
    p = sub.add_parser("train", help="train a sentencepiece model (byte fallback, reserved ids, thought markers)")
    p.add_argument("--data", required=True, help="TFDS data dir from `data prepare`, or a .jsonl file")
    p.add_argument("--vocab-size", type=int, required=True)
    p.add_argument("--out", required=True, help="a .model path, or a directory for tokenizer.model")
    p.add_argument("--force", action="store_true", help="replace an existing tokenizer at --out")
    p.add_argument("--type", choices=("unigram", "bpe"), default="unigram")
    p.add_argument("--split", default="train")
    p.add_argument("--text-key", default="text")
    p.add_argument("--user-symbols", default="<think>,</think>",
                   help="comma-separated pieces kept whole (thought markers)")
    p.add_argument("--model-vocab-size", type=int, help="fail if --vocab-size exceeds the model's embedding")
    p.add_argument("--max-sentences", type=int, default=2_000_000, help="lines sampled for training")
    p.set_defaults(handler=run_train)


def run_train(args: argparse.Namespace) -> int:
    from rlp_jax.data.sp_train import output_path, train_sentencepiece
    from rlp_jax.data.tfds_io import read_texts
    from rlp_jax.errors import check_output_dir, check_output_file
    from rlp_jax.tokenizer import SENTENCEPIECE_FILE, load_tokenizer

    if args.model_vocab_size is not None and args.vocab_size > args.model_vocab_size:
        raise UserError(f"tokenizer vocabulary ({args.vocab_size}) is larger than the model's "
                        f"embedding ({args.model_vocab_size} rows)")
    if output_path(args.out) == args.out:
        check_output_file(args.out, args.force)
    else:
        check_output_dir(args.out, args.force, (SENTENCEPIECE_FILE,))
    texts = read_texts(args.data, args.split, args.text_key)
    symbols = [s for s in args.user_symbols.split(",") if s]
    path = train_sentencepiece(texts, args.out, args.vocab_size, model_type=args.type,
                               user_symbols=symbols, max_sentences=args.max_sentences)
    tok = load_tokenizer(path)
    print(f"wrote {path} (vocab {tok.vocab_size}, pad {tok.pad_id}, bos {tok.bos_id}, eos {tok.eos_id})")
    return 0
