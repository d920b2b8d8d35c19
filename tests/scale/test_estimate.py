"""The step-time estimate is the FLOP and byte model at the chip's spec-sheet peaks."""

import pytest

from rlp_jax.bench.common import PEAKS
from rlp_jax.evaluation.flops import decode_bytes_per_step, rlp_step_flops
from rlp_jax.scale import estimate, shapes
from rlp_jax.train.config import load_config


def test_phases_are_flops_at_peak_and_decode_is_bound_by_bytes():
    cfg, _, _ = shapes.concrete(load_config("configs/qwen3_1.7b_v5p.yaml"))
    got = estimate.step_seconds(cfg, "TPU v5p", 64, 1)
    r = cfg.rollout
    flops = rlp_step_flops(cfg.model, 128, 2048, 4, 16, 2048, 2, 1, 4)
    assert got["update"] == pytest.approx(flops["update"] / (64 * PEAKS["TPU v5p"]["bf16_flops"]))
    weights = cfg.model.param_count() * 2
    kv = decode_bytes_per_step(cfg.model, 128, 2048, r.branches, r.branch_len) - weights
    assert got["decode"] == pytest.approx(2050 * (weights + kv / 64) / PEAKS["TPU v5p"]["hbm_bytes_per_s"])
    assert got["total"] == pytest.approx(sum(v for k, v in got.items() if k != "total"))
    assert estimate.step_seconds(cfg, "TPU v9", 64, 1) is None
