"""GPU hosts described to XLA without a GPU: the device description that
`jax.experimental.topologies` needs to compile for CUDA on a CPU machine (text format of
XLA's `DeviceDescription` proto, figures from NVIDIA's spec sheets)."""

from __future__ import annotations

# Hopper SXM: 132 SMs, compute capability 9.0, 50 MiB L2, 228 KiB shared memory per SM.
_HOPPER = """gpu_device_info {{
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_core: 233472
  threads_per_core_limit: 2048
  core_count: 132
  fpus_per_core: 128
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  memory_bandwidth: {bandwidth}
  l2_cache_size: 52428800
  clock_rate_ghz: 1.98
  device_memory_size: {memory}
  shared_memory_per_block_optin: 232448
  cuda_compute_capability {{
    major: 9
  }}
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
}}
platform_name: "CUDA"
dnn_version_info {{
  major: 9
  minor: 1
}}
device_description_str: "{name}"
"""
# XLA flags without which deviceless CUDA compilation fails ("Couldn't find output tile
# sizes"): no autotuning (there is no GPU to time on) and no Triton GEMMs.
XLA_FLAGS = "--xla_gpu_autotune_level=0 --xla_gpu_enable_triton_gemm=false"
DEVICES = {
    "h100": {"name": "NVIDIA H100 80GB HBM3", "memory": 84_929_347_584, "bandwidth": 3_352_320_000_000},
    "h200": {"name": "NVIDIA H200", "memory": 150_754_820_096, "bandwidth": 4_800_000_000_000},
}


def device_description(kind: str) -> str:
    """The description text of one GPU of `kind` ("h100" or "h200")."""
    return _HOPPER.format(**DEVICES[kind])
