"""One full RLP step, and each of its phases jitted alone (EMA pass, prefill, decode, update).

The phase times come from separately compiled functions, so they miss the fusion the single
compiled RLP step gets; `decode` is the rollout after the window prefill (open marker,
thought loop, close marker), timed on its own from a cache prefilled once. Model FLOPs per phase are `flops.rlp_step_flops` (thoughts run to
full length here, so the count is exact rather than an upper bound).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from rlp_jax.model import transformer as model
from rlp_jax.objectives import policy_loss as objective
from rlp_jax.rollout import no_think as rewards
from rlp_jax import progress
from rlp_jax.bench.common import compiled_memory, median_time, peak_for, peak_memory, stream_bandwidth
from rlp_jax.bench.common import timed_compile
from rlp_jax.bench.rollout import Shape, forcing_setup
from rlp_jax.evaluation.flops import decode_bytes_per_step, rlp_step_flops
from rlp_jax.model.config import ModelConfig
from rlp_jax.rollout.positions import choose_positions
from rlp_jax.objectives.rlp import RLP
from rlp_jax.rollout.thoughts import decode_thoughts, prefill_window, rollout_thoughts_jit
from rlp_jax.train.optimizer import OptimizerConfig
from rlp_jax.train.state import init_state
from rlp_jax.train.step import make_train_step, optimize


def run(params, cfg: ModelConfig, shape: Shape, repeats: int = 3, log=print) -> dict:
    params, rcfg = forcing_setup(params, cfg, shape)
    ocfg = OptimizerConfig(learning_rate=1e-6)
    keys = jax.random.split(jax.random.key(0), 4)
    window = jax.random.randint(keys[0], (shape.batch, shape.window), 0, cfg.vocab_size - 2)
    t = choose_positions(keys[1], jnp.zeros(window.shape), rcfg)
    # Phases: each compiles on its first call, then is timed; the fused step compiles alone.
    bar = progress.bar(desc="bench step", total=6, unit="phase")

    started = []

    def phase(name: str) -> None:
        bar.update(len(started[:1]))  # the phase before this one is done
        started.append(name)
        bar.set_postfix_str(name)

    phase("ema_pass: compiling and timing")
    times = {"ema_pass": median_time(jax.jit(lambda: rewards.no_think_scores(params, cfg, window)), repeats)}
    prefill = jax.jit(lambda: model.prefill(params, cfg, window, model.init_cache(cfg, shape.batch, shape.window)))
    phase("prefill: compiling and timing")
    times["prefill"] = median_time(prefill, repeats)
    phase("rollout (decode): compiling and timing")
    window_cache = jax.jit(lambda: prefill_window(params, cfg, window))()
    decode = jax.jit(lambda cache: decode_thoughts(params, cfg, rcfg, window, t, keys[2], cache))
    times["decode"] = median_time(lambda: decode(window_cache), repeats)
    roll = rollout_thoughts_jit(params, cfg, rcfg, window, t, keys[2])
    batch = objective.LossBatch(window=window, t=roll.t, thoughts=roll.thoughts, lengths=roll.lengths,
                                logp_old=roll.logp,
                                advantages=objective.advantages(roll.s_pred, rcfg.group_size, "rlp"))
    state = init_state(params, ocfg, keys[3])
    rlp = RLP(cfg, rcfg)
    update = jax.jit(functools.partial(optimize, rlp, ocfg, 0.999))
    phase("update: compiling and timing")
    times["update"] = median_time(lambda: update(state.params, state.opt_state, state.ema_params, batch),
                                  repeats)

    step, _ = make_train_step(rlp, ocfg, 0.999, state)
    phase("full RLP step: compiling")
    compiled, compile_s = timed_compile(step, state, window)
    holder = {"state": jax.tree.map(jnp.copy, state)}

    def one_step():
        holder["state"], metrics = compiled(holder["state"], window)
        return metrics

    phase("full RLP step: timing")
    times["total"] = median_time(one_step, repeats)
    bar.update()
    bar.close()
    flops = rlp_step_flops(cfg, shape.batch, shape.window, shape.positions, shape.group, shape.thought,
                           marker_len=len(rcfg.open_ids) + len(rcfg.close_ids),
                           updates=rlp.updates_per_rollout * rlp.minibatches)
    peak = peak_for(jax.devices()[0].device_kind)
    phases = {}
    for name in ("ema_pass", "prefill", "decode", "update", "total"):
        seconds = times[name]
        achieved = flops[name] / seconds if seconds > 0 else None
        phases[name] = {"time_s": seconds, "flops": flops[name], "flops_per_s": achieved,
                        "utilization": (achieved / peak[1]["bf16_flops"]) if peak and achieved else None}
        log(f"step {name:>8}: {seconds * 1e3:9.1f} ms  {flops[name]:.3e} FLOP  "
            f"{(achieved or 0) / 1e9:8.2f} GFLOP/s"
            + (f"  {phases[name]['utilization'] * 100:.1f}% of {peak[0]} bf16 peak" if phases[name]["utilization"]
               else ""))
    roofline = decode_roofline(cfg, shape, rcfg, times["decode"], peak)
    log(f"step decode: {roofline['step_s'] * 1e3:.2f} ms/step reading {roofline['bytes_per_step'] / 1e6:.1f} MB "
        f"= {roofline['bytes_per_s'] / 1e9:.1f} GB/s, {roofline['fraction'] * 100:.1f}% of {roofline['reference']}")
    phase_sum = sum(times[n] for n in ("ema_pass", "prefill", "decode", "update"))
    log(f"step compile {compile_s:.1f} s; phases alone sum to {phase_sum * 1e3:.1f} ms vs the fused step "
        f"{times['total'] * 1e3:.1f} ms; mean thought length {float(jnp.mean(roll.lengths)):.1f}")
    return {"shape": shape.as_dict(), "phases": phases, "phase_sum_s": phase_sum, "compile_s": compile_s,
            "mean_thought_len": float(jnp.mean(roll.lengths.astype(jnp.float32))),
            "compiled_memory": compiled_memory(compiled), "peak_memory": peak_memory(),
            "decode_roofline": roofline}


def decode_roofline(cfg: ModelConfig, shape: Shape, rcfg, decode_s: float, peak) -> dict:
    """Achieved memory bandwidth of a rollout decode step against the device's roofline.

    A step is one `extend` of every branch: the L thought steps plus the open- and
    close-marker calls. The reference is the spec-sheet HBM bandwidth where the device is
    in the peak table, else the bandwidth a jitted sum reaches here (`stream_bandwidth`).
    """
    steps = shape.thought + 2
    step_s = decode_s / steps
    moved = decode_bytes_per_step(cfg, shape.batch, shape.window, shape.positions * shape.group, rcfg.branch_len)
    if peak:
        reference, reference_bps = f"{peak[0]} HBM spec", peak[1]["hbm_bytes_per_s"]
    else:
        reference, reference_bps = "measured stream bandwidth (jitted sum, 256 MiB)", stream_bandwidth()
    achieved = moved / step_s if step_s > 0 else 0.0
    return {"steps": steps, "step_s": step_s, "bytes_per_step": moved, "bytes_per_s": achieved,
            "reference": reference, "reference_bytes_per_s": reference_bps, "fraction": achieved / reference_bps}
