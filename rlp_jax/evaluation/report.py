"""`rlp-jax report`: curves from run directories and power-law fits against compute.

Each run directory holds `metrics.jsonl` (one JSON object per logged step, keys such as
`train/reward_mean`, `eval/...`) and `config.yaml`. Curves are drawn against steps and
against cumulative training FLOPs (rollout tokens counted, `rlp_jax.evaluation.flops`), several runs
per figure. Accuracy curves are fitted per bucket with P(C) = A / C^α + P*.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from rlp_jax.errors import UserError, jsonl_records


MAX_ALPHA = 3.0  # exponents beyond this are artefacts of a plateau, not scaling


def fit_power_law(compute, value) -> dict:
    """Least-squares fit of value = A / compute^α + P*; returns {"A", "alpha", "P_star", "rmse"}.

    Compute is rescaled by its minimum for conditioning; A may be negative (a rising
    accuracy curve approaches P* from below).
    """
    from scipy.optimize import curve_fit

    c = np.asarray(compute, np.float64)
    y = np.asarray(value, np.float64)
    keep = np.isfinite(c) & np.isfinite(y) & (c > 0)
    c, y = c[keep], y[keep]
    if c.size < 4:
        raise UserError(f"a power-law fit needs at least 4 points, got {c.size}")
    if np.ptp(y) < 1e-9:
        raise UserError("the curve is flat: nothing to fit")
    scale = c.min()
    x = c / scale

    def model(x, a, alpha, p_star):
        return a * x ** (-alpha) + p_star

    p0 = (y[0] - y[-1], 0.5, y[-1])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # covariance warnings: we report the rmse instead
            (a, alpha, p_star), _ = curve_fit(model, x, y, p0=p0, maxfev=20000,
                                              bounds=([-np.inf, 0.0, -np.inf], [np.inf, MAX_ALPHA, np.inf]))
    except RuntimeError as err:
        raise UserError(f"power-law fit did not converge: {err}") from None
    rmse = float(np.sqrt(np.mean((model(x, a, alpha, p_star) - y) ** 2)))
    return {"A": float(a * scale ** alpha), "alpha": float(alpha), "P_star": float(p_star), "rmse": rmse}


def read_metrics(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise UserError(f"{path} not found: is {run_dir} a run directory?")
    return [record for _, record in jsonl_records(path)]


def series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one metric across records that have it."""
    pairs = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    if not pairs:
        return np.zeros(0), np.zeros(0)
    steps, values = zip(*pairs)
    return np.asarray(steps, np.float64), np.asarray(values, np.float64)


def plot_curves(runs: dict[str, tuple[list[dict], float]], keys: list[str], path: str,
                x_axis: str = "step") -> list[str]:
    """One panel per metric key, one line per run; x is steps or cumulative FLOPs.

    `runs` maps a label to (records, flops_per_step). Returns the keys actually drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = [k for k in keys if any(series(r, k)[0].size for r, _ in runs.values())]
    if not drawn:
        return []
    fig, axes = plt.subplots(len(drawn), 1, figsize=(7, 2.6 * len(drawn)), squeeze=False)
    for ax, key in zip(axes[:, 0], drawn):
        for label, (records, flops_per_step) in runs.items():
            steps, values = series(records, key)
            if steps.size:
                x = steps if x_axis == "step" else steps * flops_per_step
                ax.plot(x, values, marker=".", label=label)
        ax.set_ylabel(key.split("/", 1)[-1], fontsize=8)
        if x_axis == "flops":
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("step" if x_axis == "step" else "training FLOPs (rollouts included)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn
