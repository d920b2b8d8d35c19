"""Per-decode-step sampling cost on a SmolLM2-sized vocabulary: ours vs the plain JAX baseline.

    python benchmarks/sampling.py [--rows 16] [--vocab 49152]

Prints milliseconds per call (median of 50, compile excluded) and the ratio against
`jax.random.categorical` (Gumbel-max over the whole vocabulary), measured in one process.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from rlp_jax.rollout.sampling import categorical, sample_logits


def _median_ms(fn, *args, repeats: int = 50) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--vocab", type=int, default=49152)
    args = parser.parse_args()
    logits = jax.random.normal(jax.random.key(0), (args.rows, args.vocab)) * 3.0
    key = jax.random.key(1)
    cases = {
        "jax.random.categorical (baseline)": jax.jit(lambda k, x: jax.random.categorical(k, x, axis=-1)),
        "sampling.categorical": jax.jit(categorical),
        "sample_logits T=0.7": jax.jit(lambda k, x: sample_logits(x, k, 0.7)),
        "sample_logits T=0.7 top_k=8": jax.jit(lambda k, x: sample_logits(x, k, 0.7, top_k=8)),
        "sample_logits T=0.7 top_p=0.95": jax.jit(lambda k, x: sample_logits(x, k, 0.7, top_p=0.95)),
    }
    print(f"[{args.rows}, {args.vocab}] logits, {jax.devices()[0].platform}")
    baseline = None
    for name, fn in cases.items():
        ms = _median_ms(fn, key, logits)
        baseline = baseline or ms
        print(f"{name:34s} {ms:8.2f} ms   {baseline / ms:6.1f}x vs baseline")


if __name__ == "__main__":
    main()
