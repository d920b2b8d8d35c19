"""`rlp-jax data prepare` (build a TFDS dataset offline) and `rlp-jax data inspect`
(run the Grain pipeline: show a batch, check the tokenizer, measure tokens/s)."""

from __future__ import annotations

import argparse
import time

from rlp_jax.data.builtin import BUILTINS
from rlp_jax.errors import UserError


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="prepare and inspect training data")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser("prepare", help="build a TFDS (ArrayRecord) dataset from local files, offline")
    p.add_argument("--name", required=True, help="dataset name (lower-case identifier)")
    p.add_argument("--input", action="append", nargs="+", default=[], metavar="FILES_OR_GLOB",
                   help="files, globs, directories, a TFDS data dir, or builtin:NAME (shakespeare, arithmetic, sums, sums_worked, sums_boxed)")
    p.add_argument("--builtin", choices=BUILTINS, help="shorthand for --input builtin:NAME")
    p.add_argument("--out", required=True, help="TFDS data dir; the dataset goes to OUT/NAME/1.0.0")
    p.add_argument("--force", action="store_true", help="replace a dataset of that name already in --out")
    p.add_argument("--format", choices=("text", "jsonl", "markdown"),
                   help="input format (default: from each file's suffix; .jsonl, .md, else text)")
    p.add_argument("--text-key", default="text", help="JSONL / TFDS field holding the text")
    p.add_argument("--validation-fraction", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0, help="seed of the train/validation split")
    p.add_argument("--min-chars", type=int, default=1, help="minimum document length (characters)")
    p.add_argument("--drop-short", action="store_true", help="skip documents under --min-chars instead of failing")
    p.add_argument("--builtin-docs", type=int, default=2000, help="documents of a generated corpus (arithmetic, sums)")
    p.set_defaults(handler=run_prepare)

    p = sub.add_parser("inspect", help="run the input pipeline: shapes, a sample, tokens/s")
    p.add_argument("--data", required=True, help="TFDS data dir or .jsonl file")
    p.add_argument("--tokenizer", required=True, help="tokenizer .model / tokenizer.json or its directory")
    p.add_argument("--split", default="train")
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--packing", choices=("concat", "pack"), default="concat")
    p.add_argument("--batches", type=int, default=20, help="batches to time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--read-threads", type=int, default=2)
    p.add_argument("--model-vocab-size", type=int, help="fail if the tokenizer's vocabulary is larger")
    p.add_argument("--process-index", type=int, default=0)
    p.add_argument("--process-count", type=int, default=1)
    p.set_defaults(handler=run_inspect)


def run_prepare(args: argparse.Namespace) -> int:
    from rlp_jax.data.prepare import prepare
    from rlp_jax.data.tfds_io import dataset_summary

    inputs = [item for group in args.input for item in group]
    if args.builtin:
        inputs.append(f"builtin:{args.builtin}")
    path = prepare(args.name, inputs, args.out, fmt=args.format,
                   validation_fraction=args.validation_fraction, seed=args.seed,
                   min_chars=args.min_chars, drop_short=args.drop_short, text_key=args.text_key,
                   builtin_docs=args.builtin_docs, force=args.force)
    counts = ", ".join(f"{split}: {n} documents" for split, n in dataset_summary(path).items())
    print(f"wrote {path} ({counts})")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    import numpy as np

    from rlp_jax import progress
    from rlp_jax.data.pipeline import DataConfig, make_iterator
    from rlp_jax.tokenizer import load_tokenizer

    if args.batches < 1:
        raise UserError("--batches must be >= 1")
    config = DataConfig(data=args.data, tokenizer=args.tokenizer, split=args.split,
                        seq_len=args.seq_len, batch_size=args.batch_size, packing=args.packing,
                        seed=args.seed, read_threads=args.read_threads,
                        model_vocab_size=args.model_vocab_size)
    it = make_iterator(config, args.process_index, args.process_count)
    try:
        start = time.perf_counter()
        first = next(it)
        warm = time.perf_counter()
        real = int((first["segment_ids"] > 0).sum())
        for _ in progress.bar(range(args.batches - 1), desc="data inspect", unit="batch", leave=False):
            real += int((next(it)["segment_ids"] > 0).sum())
        end = time.perf_counter()
    except StopIteration:
        raise UserError("the pipeline produced too few batches; lower --batch-size or --seq-len") from None
    finally:
        it.close()
    shapes = ", ".join(f"{k} {v.dtype}{list(v.shape)}" for k, v in sorted(first.items()))
    window = args.batch_size * args.seq_len
    print(f"batch: {shapes}")
    print(f"documents in window 0: {int(first['segment_ids'][0].max())}; "
          f"non-padding: {real / (args.batches * window):.3f}")
    tok = load_tokenizer(args.tokenizer)
    sample = tok.decode(first["tokens"][0][first["segment_ids"][0] > 0][:64].tolist())
    print(f"sample: {sample!r}")
    # Timed from the iterator's first request, so read-ahead buffers cannot inflate the rate.
    rate = args.batches * window / (end - start)
    print(f"throughput: {rate:,.0f} tokens/s ({args.batches} batches of {args.batch_size}x{args.seq_len} "
          f"in {end - start:.2f}s; first batch {warm - start:.2f}s)")
    return 0 if np.all(first["tokens"] < tok.vocab_size) else 1
