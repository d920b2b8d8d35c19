"""`rlp-jax bench`: figures, not tests — rollouts, the sampler, and one RLP step.

    from rlp_jax.bench import run_bench, to_markdown
    result = run_bench("tiny", suites=("rollout",), quick=True)   # JSON-ready dict
    print(to_markdown(result))

Suites: `rollout` (prefix-shared vs re-encoding, swept over T, K, G, L), `sampler`
(`sampling.generate` vs transformers `generate`, SmolLM2-135M only has the peer) and `step`
(one RLP step by phase: FLOPs, FLOP/s, utilization, compile time, memory).
"""

from __future__ import annotations

from rlp_jax.bench.common import MODELS, PEAKS, environment, load_preset, peak_for
from rlp_jax.bench.report import to_markdown
from rlp_jax.bench.rollout import FULL_BASE, FULL_SWEEP, QUICK_BASE, QUICK_SWEEP, Shape
from rlp_jax import progress
from rlp_jax.errors import UserError

SUITES = ("rollout", "sampler", "step")

__all__ = ["MODELS", "PEAKS", "SUITES", "Shape", "load_preset", "peak_for", "run_bench", "to_markdown"]


def run_bench(model_name: str, suites=SUITES, quick: bool = False, shape: Shape | None = None,
              sweep: bool = True, sampler_shape: tuple[int, int, int] | None = None, repeats: int | None = None,
              log=progress.log) -> dict:
    """Run the chosen suites on a preset model; returns the JSON-ready result.

    Each suite draws a progress bar naming the phase it is in (most of a point's time is
    compilation); `log` prints the result lines above it."""
    from rlp_jax.bench import rollout, sampler, step

    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise UserError(f"unknown bench suite(s) {', '.join(unknown)} (choose from {', '.join(SUITES)}, all)")
    cfg, params = load_preset(model_name)
    shape = shape or (QUICK_BASE if quick else FULL_BASE)
    repeats = repeats or (2 if quick else 3)
    result = {"meta": environment(model_name, cfg, quick)}
    log(f"bench {model_name} ({cfg.param_count() / 1e6:.1f}M params, {cfg.dtype}) on "
        f"{result['meta']['device_kind']}, jax {result['meta']['jax']}")
    if "rollout" in suites:
        grid = (QUICK_SWEEP if quick else FULL_SWEEP) if sweep else None
        result["rollout"] = rollout.run(params, cfg, shape, grid, repeats, log=log)
    if "sampler" in suites:
        batch, prompt_len, new_tokens = sampler_shape or ((1, 16, 8) if quick else (4, 64, 64))
        result["sampler"] = sampler.run(params, cfg, model_name, batch, prompt_len, new_tokens, repeats, log=log)
    if "step" in suites:
        result["step"] = step.run(params, cfg, shape, repeats, log=log)
    return result
