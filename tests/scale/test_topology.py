"""Topology names as Cloud TPU writes them map to the chip grids the compiler wants."""

import pytest

from rlp_jax.errors import UserError
from rlp_jax.scale import topology

GIB = 1024 ** 3


@pytest.mark.parametrize("name, grid, chips, hbm_gib", [
    ("v5p-128", "v5p:4x4x4", 64, 95.74), ("v5p-512", "v5p:8x8x4", 256, 95.74), ("v4-128", "v4:4x4x4", 64, 32),
    ("v5e-256", "v5e:16x16", 256, 16), ("v6e-256", "v6e:16x16", 256, 32), ("v5e-4", "v5e:2x2", 4, 16),
    ("V5P-8", "v5p:1x2x2", 4, 95.74),
])
def test_slice_names_map_to_chip_grids(name, grid, chips, hbm_gib):
    target = topology.parse(name)
    assert (target.platform, target.topology, target.chips, target.slices) == ("tpu", grid, chips, 1)
    assert target.hbm_bytes == pytest.approx(hbm_gib * GIB, rel=1e-3)


def test_multi_slice_and_gpu_hosts():
    two = topology.parse("2xv5e-256")
    assert (two.topology, two.slices, two.devices) == ("v5e:16x16", 2, 512)
    gpu = topology.parse("h100x8")
    assert (gpu.platform, gpu.topology, gpu.devices, gpu.chip) == ("cuda", "1x1x8", 8, "H100 SXM")
    assert gpu.hbm_bytes == 84_929_347_584 and topology.parse("h200x8").hbm_bytes > 140 * 10 ** 9


@pytest.mark.parametrize("name, message", [
    ("v5p-3", "counts 2 cores per chip"), ("v5e-3", "no v5e slice of that size"), ("tpu-128", "unknown topology"),
    ("v7-8", "unknown topology"),
])
def test_bad_names_are_one_line(name, message):
    with pytest.raises(UserError, match=message) as err:
        topology.parse(name)
    assert "\n" not in str(err.value)


def test_the_devices_of_a_small_slice():
    devices = topology.devices(topology.parse("2xv5e-4"))
    assert len(devices) == 8 and {d.platform for d in devices} == {"tpu"}
    assert "v5 lite" in devices[0].device_kind.lower()
