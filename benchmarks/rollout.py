"""Prefix-shared vs re-encoding thought rollouts, and the time breakdown of one RLP step.

    python benchmarks/rollout.py [--window 512 --positions 8 --group 4 --thought 32 --batch 1]

Tiny model on whatever device JAX sees. Timings are medians of a few runs after one
compilation; each phase is jitted on its own, so the breakdown excludes fusion across
phases that the single compiled `rlp_step` gets.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from rlp_jax import model, objective, rewards
from rlp_jax.model_config import ModelConfig
from rlp_jax.positions import choose_positions
from rlp_jax.reference import reference_rollout_jit
from rlp_jax.rlp import init_state, rlp_step
from rlp_jax.rlp_config import OptimizerConfig, RLPConfig
from rlp_jax.sampling import rollout_thoughts_jit


def timed(fn, *args, repeats=3):
    jax.block_until_ready(fn(*args))  # compile
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        runs.append(time.perf_counter() - start)
    return sorted(runs)[len(runs) // 2]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--positions", type=int, default=8)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--thought", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    cfg = ModelConfig(vocab_size=256, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16, mlp_dim=128)
    # close marker 255 never sampled on purpose: every thought runs the full L steps
    rcfg = RLPConfig(group_size=args.group, positions_per_window=args.positions, thought_len=args.thought,
                     temperature=1.0, top_k=254, open_ids=(254,), close_ids=(255,), min_context=16)
    params = model.init_params(cfg, jax.random.key(0))
    params["params"]["embed"]["embedding"] = params["params"]["embed"]["embedding"].at[255].set(-1.0)
    window = jax.random.randint(jax.random.key(1), (args.batch, args.window), 0, 254)
    t = choose_positions(jax.random.key(2), jnp.zeros(window.shape), rcfg)
    key = jax.random.key(3)
    n = args.batch * rcfg.branches
    print(f"device={jax.devices()[0].device_kind} T={args.window} K={args.positions} G={args.group} "
          f"L={args.thought} B={args.batch} N={n} model d={cfg.d_model} layers={cfg.n_layers}")

    fast = timed(lambda: rollout_thoughts_jit(params, cfg, rcfg, window, t, key))
    ref = timed(lambda: reference_rollout_jit(params, cfg, rcfg, window, t, key))
    print(f"rollout prefix-shared {fast * 1e3:.1f} ms | re-encoding reference {ref * 1e3:.1f} ms | "
          f"ratio {ref / fast:.2f}x")

    ema_pass = timed(jax.jit(lambda: rewards.no_think_scores(params, cfg, window)))
    prefill = timed(jax.jit(lambda: model.prefill(params, cfg, window, model.init_cache(cfg, args.batch,
                                                                                      args.window))))
    roll = rollout_thoughts_jit(params, cfg, rcfg, window, t, key)
    decode = max(fast - prefill, 0.0)
    batch = objective.LossBatch(window=window, t=roll.t, thoughts=roll.thoughts, lengths=roll.lengths,
                                logp_old=roll.logp, advantages=objective.advantages(roll.s_pred, rcfg))
    grad = jax.jit(jax.grad(objective.rlp_loss, has_aux=True), static_argnames=("cfg", "rcfg"))
    update = timed(lambda: grad(params, cfg, rcfg, batch))
    ocfg = OptimizerConfig(learning_rate=1e-4)
    state = init_state(params, ocfg, key)
    whole = timed(jax.jit(lambda s: rlp_step(s, window, cfg=cfg, rcfg=rcfg, ocfg=ocfg)), state)
    print(f"step breakdown: EMA pass {ema_pass * 1e3:.1f} ms | prefill {prefill * 1e3:.1f} ms | "
          f"decode+close {decode * 1e3:.1f} ms | update (grad) {update * 1e3:.1f} ms | "
          f"whole rlp_step {whole * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
