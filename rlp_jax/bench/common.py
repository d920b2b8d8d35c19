"""Shared pieces of `rlp-jax bench`: model presets, timing, device peaks, memory, metadata."""

from __future__ import annotations

import datetime
import os
import platform
import resource
import statistics
import sys
import time
import warnings

import jax

from rlp_jax.errors import UserError
from rlp_jax.model.config import ModelConfig
from rlp_jax.model.presets import architecture

# Peak dense bf16 matmul throughput (FLOP/s, no sparsity) and HBM bandwidth (bytes/s) from the
# vendors' public spec sheets:
#   H100 SXM: NVIDIA H100 Tensor Core GPU datasheet — BF16 1,979 TFLOPS *with sparsity*, so
#             989 TFLOPS dense; HBM3 3.35 TB/s.
#   H200 SXM: NVIDIA H200 Tensor Core GPU datasheet — BF16 1,979 TFLOPS with sparsity (989
#             dense); HBM3e 4.8 TB/s.
#   TPU v4:   cloud.google.com/tpu/docs/v4 — 275 TFLOPS bf16 per chip, 1,200 GB/s HBM2.
#   TPU v5e:  cloud.google.com/tpu/docs/v5e — 197 TFLOPS bf16 per chip, 819 GB/s.
#   TPU v5p:  cloud.google.com/tpu/docs/v5p — 459 TFLOPS bf16 per chip, 2,765 GB/s.
#   TPU v6e:  cloud.google.com/tpu/docs/v6e — 918 TFLOPS bf16 per chip, 1,640 GB/s.
PEAKS = {
    "H100 SXM": {"bf16_flops": 989e12, "hbm_bytes_per_s": 3.35e12},
    "H200": {"bf16_flops": 989e12, "hbm_bytes_per_s": 4.8e12},
    "TPU v4": {"bf16_flops": 275e12, "hbm_bytes_per_s": 1.2e12},
    "TPU v5e": {"bf16_flops": 197e12, "hbm_bytes_per_s": 0.819e12},
    "TPU v5p": {"bf16_flops": 459e12, "hbm_bytes_per_s": 2.765e12},
    "TPU v6e": {"bf16_flops": 918e12, "hbm_bytes_per_s": 1.64e12},
}


def peak_for(device_kind: str) -> tuple[str, dict] | None:
    """`(table name, peaks)` for a JAX `device_kind`, or None where the peak is unknown.

    PCIe / NVL variants of H100 and H200 have lower clocks and power: they are not matched.
    """
    kind = " ".join(device_kind.lower().replace("-", " ").split())
    if "h100" in kind and "pcie" not in kind and "nvl" not in kind:
        name = "H100 SXM"
    elif "h200" in kind and "nvl" not in kind:
        name = "H200"
    elif "tpu" in kind and ("v5 lite" in kind or "v5e" in kind or "v5litepod" in kind):
        name = "TPU v5e"
    elif "tpu" in kind and ("v5p" in kind or kind.endswith("v5")):
        name = "TPU v5p"
    elif "tpu" in kind and ("v6 lite" in kind or "v6e" in kind):
        name = "TPU v6e"
    elif "tpu" in kind and "v4" in kind:
        name = "TPU v4"
    else:
        return None
    return name, PEAKS[name]


# ----------------------------------------------------------------------------- model presets

MODELS = ("tiny", "smollm2-135m", "qwen3-1.7b-shape")


def load_preset(name: str, seed: int = 0):
    """`(cfg, params)` of a named preset; unknown names are a UserError."""
    if name not in MODELS:
        raise UserError(f"unknown bench model {name!r} (choose one of {', '.join(MODELS)})")
    if name == "smollm2-135m":
        from rlp_jax.convert.fetch import fetch_model
        from rlp_jax.model.io import load_model

        return load_model(fetch_model("smollm2-135m"))
    from rlp_jax.model import transformer as model

    cfg = architecture("tiny" if name == "tiny" else "qwen3-1.7b")
    if name == "qwen3-1.7b-shape" and jax.default_backend() == "cpu":
        warnings.warn("qwen3-1.7b-shape on CPU is very slow (bf16, 1.7B parameters): it is meant for "
                      "accelerators", stacklevel=2)
    return cfg, jax.jit(model.init_params, static_argnums=0)(cfg, jax.random.key(seed))


# ----------------------------------------------------------------------------- timing and memory

def median_time(fn, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall seconds of `fn()` (results blocked on) after `warmup` untimed calls."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    runs = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def stream_bandwidth(megabytes: int = 256, repeats: int = 5) -> float:
    """Bytes/s of a jitted sum over a float32 array: the memory bandwidth this device really
    reaches, the roofline reference where no spec-sheet peak is known (CPUs)."""
    import jax.numpy as jnp

    data = jnp.ones((megabytes * 2**20 // 4,), jnp.float32)
    total = jax.jit(jnp.sum)
    return data.nbytes / median_time(lambda: total(data), repeats)


def timed_compile(jitted, *args):
    """`(compiled, seconds)` of `jitted.lower(*args).compile()`."""
    start = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - start


def compiled_memory(compiled) -> dict | None:
    """XLA's static memory analysis of a compiled executable (bytes), where available."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if m is None:
        return None
    fields = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
              "generated_code_size_in_bytes", "alias_size_in_bytes")
    return {f: int(getattr(m, f)) for f in fields if hasattr(m, f)}


def peak_memory() -> dict:
    """Device peak bytes in use (`memory_stats()`), else the host's max RSS, labelled."""
    stats = None
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001
        stats = None
    if stats and "peak_bytes_in_use" in stats:
        return {"source": "device memory_stats peak_bytes_in_use", "bytes": int(stats["peak_bytes_in_use"])}
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024
    return {"source": "host max RSS (getrusage; no device memory stats)", "bytes": int(rss_kb * scale)}


def environment(model_name: str, cfg: ModelConfig, quick: bool) -> dict:
    import jaxlib

    dev = jax.devices()[0]
    peak = peak_for(dev.device_kind)
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": jax.default_backend(), "device_kind": dev.device_kind,
        "device_count": jax.device_count(), "host_cpus": os.cpu_count(),
        "jax": jax.__version__, "jaxlib": jaxlib.__version__, "python": platform.python_version(),
        "model": model_name, "params": cfg.param_count(), "dtype": cfg.dtype, "quick": quick,
        "peak": None if peak is None else {"name": peak[0], **peak[1]},
    }
    return meta
