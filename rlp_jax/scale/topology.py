"""Topology names as users write them (`v5p-128`, `v5e-256`, `2xv6e-256`, `h100x8`) → the
abstract devices that `jax.experimental.topologies` compiles for, and each chip's HBM.

Cloud TPU names count TensorCores for v4 and v5p (two per chip) and chips for v5e and
v6e; the topology library wants the chip grid (`v5p:4x4x4`). Grids below are the ones
Cloud TPU provisions for each size.
"""

from __future__ import annotations

import dataclasses
import os
import re

from rlp_jax.errors import UserError

GIB = 1024 ** 3


@dataclasses.dataclass(frozen=True)
class Generation:
    name: str  # as in the topology library's grid names
    cores_per_chip: int  # how many the slice name counts per chip
    hbm_bytes: int  # per chip
    dims: int  # 3: a 3-D torus (v4, v5p), 2: a 2-D one (v5e, v6e)
    accelerator: str  # Cloud TPU's accelerator-type prefix (TPU_ACCELERATOR_TYPE)


GENERATIONS = {
    "v4": Generation("v4", 2, 32 * GIB, 3, "v4"),
    "v5p": Generation("v5p", 2, int(95.74 * GIB), 3, "v5p"),
    "v5e": Generation("v5e", 1, 16 * GIB, 2, "v5litepod"),
    "v6e": Generation("v6e", 1, 32 * GIB, 2, "v6e"),
}
GRIDS_3D = {1: "1x1x1", 2: "1x1x2", 4: "1x2x2", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4",
            128: "4x4x8", 256: "8x8x4", 512: "8x8x8", 1024: "8x8x16", 2048: "8x16x16", 4096: "16x16x16"}
GRIDS_2D = {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16", 256: "16x16"}
GPUS = {"h100": "H100 SXM", "h200": "H200"}  # named as in the bench peak table
KNOWN = "v4-N, v5p-N, v5e-N, v6e-N (N as Cloud TPU counts it), SxNAME for S slices, h100xN, h200xN"


@dataclasses.dataclass(frozen=True)
class Target:
    """What to compile for: `platform` "tpu" or "cuda", the library's topology string, slices."""

    name: str
    platform: str
    topology: str
    chips: int  # per slice
    slices: int
    hbm_bytes: int
    chip: str
    accelerator: str = ""  # e.g. v5p-128 (libtpu's environment), or h100 (the GPU description)

    @property
    def devices(self) -> int:
        return self.chips * self.slices


def parse(name: str) -> Target:
    """The `Target` for a user's topology name; a one-line UserError naming the known forms."""
    text = name.strip().lower()
    slices = 1
    multi = re.fullmatch(r"(\d+)x(v\w+-\d+)", text)
    if multi:
        slices, text = int(multi.group(1)), multi.group(2)
    gpu = re.fullmatch(r"(h100|h200)x(\d+)", text)
    if gpu:
        from rlp_jax.scale.gpu import DEVICES

        count = int(gpu.group(2))
        return Target(name, "cuda", f"1x1x{count}", count, 1, DEVICES[gpu.group(1)]["memory"], GPUS[gpu.group(1)],
                      gpu.group(1))
    tpu = re.fullmatch(r"(v4|v5p|v5e|v6e)-(\d+)", text)
    if not tpu or slices < 1:
        raise UserError(f"unknown topology {name!r} (known forms: {KNOWN})")
    gen, count = GENERATIONS[tpu.group(1)], int(tpu.group(2))
    if count % gen.cores_per_chip:
        raise UserError(f"{name}: a {gen.name} slice counts {gen.cores_per_chip} cores per chip; "
                        f"{count} is not a slice size")
    chips = count // gen.cores_per_chip
    grid = (GRIDS_3D if gen.dims == 3 else GRIDS_2D).get(chips)
    if grid is None:
        sizes = sorted(c * gen.cores_per_chip for c in (GRIDS_3D if gen.dims == 3 else GRIDS_2D))
        raise UserError(f"{name}: no {gen.name} slice of that size (sizes: {', '.join(map(str, sizes))})")
    return Target(name, "tpu", f"{gen.name}:{grid}", chips, slices, gen.hbm_bytes, f"TPU {gen.name}",
                  f"{gen.accelerator}-{count}")


def quiet_libtpu(target: Target) -> None:
    """On a machine without TPUs, libtpu asks the metadata server which TPU it runs on and
    prints a page of warnings when there is none; tell it instead (a real TPU VM's own
    settings are kept). Compiling never opens a TPU, so libtpu's one-process lock (which
    would refuse a second compile running beside this one) is not needed either."""
    if target.platform != "tpu" or "TPU_ACCELERATOR_TYPE" in os.environ:
        return
    for key, value in (("TPU_ACCELERATOR_TYPE", target.accelerator), ("TPU_SKIP_MDS_QUERY", "1"),
                       ("ALLOW_MULTIPLE_LIBTPU_LOAD", "1"),
                       ("TPU_WORKER_HOSTNAMES", "localhost"), ("TPU_WORKER_ID", "0"),
                       ("TPU_STDERR_LOG_LEVEL", "3"), ("TPU_MIN_LOG_LEVEL", "3")):
        os.environ.setdefault(key, value)


def devices(target: Target):
    """The abstract devices of `target` (needs libtpu, or jax's CUDA plugin for GPU hosts)."""
    from jax.experimental import topologies

    if target.platform == "cuda":
        return _gpu_devices(target, topologies)
    quiet_libtpu(target)
    try:
        kwargs = {"num_slices": target.slices} if target.slices > 1 else {}
        desc = topologies.get_topology_desc(target.topology, platform="tpu", **kwargs)
    except (RuntimeError, ValueError, ImportError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot describe {target.name} ({first}); install the TPU compiler: "
                        f"pip install 'rlp-jax[tpu]' (the libtpu that matches your jax)") from None
    return list(desc.devices)


def gpu_flags(target: Target) -> None:
    """XLA flags deviceless CUDA compilation needs; set before JAX starts."""
    if target.platform == "cuda":
        from rlp_jax.scale.gpu import XLA_FLAGS

        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {XLA_FLAGS}".strip()


def _gpu_devices(target: Target, topologies):
    from rlp_jax.scale.gpu import device_description

    try:
        desc = topologies.get_topology_desc(platform="cuda", topology=target.topology,
                                            target_config=device_description(target.accelerator))
    except (RuntimeError, ValueError, ImportError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot describe {target.name} ({first}); install jax's CUDA plugin in its own "
                        f"environment: pip install 'rlp-jax[gpu-aot]' (GBs of CUDA wheels; no GPU needed)") from None
    return list(desc.devices)
