"""A roofline estimate of one RLP step on a slice, per phase, from the FLOP and byte model
(`evaluation.flops`) and the chip's spec-sheet peaks: an estimate, never a measurement.

Every phase but decode is taken as compute-bound (its model FLOPs spread over every chip
at bf16 peak). Decode is bound by memory: each of its L + 2 steps reads every parameter
(gathered once per rollout, so each chip reads all of them) plus its share of the window
and branch keys/values, at the HBM spec bandwidth.
"""

from __future__ import annotations

from rlp_jax.bench.common import PEAKS
from rlp_jax.evaluation.flops import decode_bytes_per_step, rlp_step_flops
from rlp_jax.train.config import TrainConfig


def step_seconds(cfg: TrainConfig, chip: str, devices: int, tensor: int) -> dict | None:
    """`{phase: seconds, "total": ...}` at peak, or None (not RLP, or no peaks for `chip`)."""
    if cfg.run.objective != "rlp" or chip not in PEAKS:
        return None
    peak = PEAKS[chip]
    r, loss, model = cfg.rollout, cfg.rlp, cfg.model
    markers = len(r.open_ids) + len(r.close_ids)
    flops = rlp_step_flops(model, cfg.data.batch_size, cfg.data.seq_len, r.positions_per_window, r.group_size,
                           r.thought_len, markers, loss.updates_per_rollout,
                           loss.minibatches * loss.grad_accumulation, loss.kl_beta > 0)
    out = {phase: flops[phase] / (devices * peak["bf16_flops"]) for phase in flops if phase != "total"}
    kv = decode_bytes_per_step(model, cfg.data.batch_size, cfg.data.seq_len, r.branches, r.branch_len)
    weights = decode_bytes_per_step(model, 0, 0, 0, 0)
    per_chip = weights / tensor + (kv - weights) / devices
    out["decode"] = max(out["decode"], (r.thought_len + 2) * per_chip / peak["hbm_bytes_per_s"])
    out["total"] = sum(out.values())
    return out
