"""`rlp-jax report`: curves from run directories and power-law fits against compute.

Each run directory holds `metrics.jsonl` (one JSON object per logged step, keys such as
`train/reward_mean`, `eval/...`) and `config.yaml`. Curves are drawn against steps and
against cumulative training FLOPs (rollout tokens counted, `rlp_jax.evaluation.flops`), several runs
per figure, by `rlp_jax.train.metrics.plot_curves`. Accuracy curves are fitted per bucket
with P(C) = A / C^α + P*.
"""

from __future__ import annotations

import warnings

import numpy as np

from rlp_jax.errors import UserError
# Reading metrics.jsonl and drawing curves belong to the training core (which draws the
# end-of-run plot); re-exported here as part of the report API.
from rlp_jax.train.metrics import plot_curves, read_metrics, series  # noqa: F401


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
