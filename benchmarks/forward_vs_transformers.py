"""Forward time for a 64-token prompt: rlp_jax (jitted, fp32) vs transformers (torch, fp32).

Both run on the same CPU threads in this process, on SmolLM2-135M loaded from the same
GGUF. Prints median seconds per forward and the ratio (transformers / ours).

    python benchmarks/forward_vs_transformers.py [--tokens 64] [--repeats 20]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _median_seconds(fn, repeats):
    fn()  # warm-up / compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    import jax
    import numpy as np
    import torch
    import transformers

    from rlp_jax.model import transformer as model
    from rlp_jax.convert.fetch import fetch_model, locate_gguf
    from rlp_jax.model.io import load_model

    start = time.perf_counter()
    directory = fetch_model("smollm2-135m")
    cfg, params = load_model(directory)
    print(f"rlp_jax model ready in {time.perf_counter() - start:.1f} s ({directory})")
    gguf_dir, gguf_file = os.path.split(locate_gguf("smollm2-135m"))
    hf = transformers.AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file,
                                                           dtype=torch.float32).eval()
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (1, args.tokens))

    jt = jax.numpy.asarray(tokens)
    ours = _median_seconds(lambda: model.forward_compiled(params, cfg, jt).block_until_ready(), args.repeats)
    tt = torch.tensor(tokens)

    def torch_forward():
        with torch.no_grad():
            hf(tt)

    theirs = _median_seconds(torch_forward, args.repeats)
    print(f"device: {jax.devices()[0].device_kind}, torch threads: {torch.get_num_threads()}")
    print(f"forward {args.tokens} tokens: rlp_jax {ours * 1e3:.1f} ms, transformers {theirs * 1e3:.1f} ms, "
          f"ratio transformers/rlp_jax = {theirs / ours:.2f}")


if __name__ == "__main__":
    main()
