"""Scaling-curve fits recover known constants; plots are written as PNG files."""

import json

import numpy as np
import pytest

from rlp_jax.errors import UserError
from rlp_jax.evaluation.report import fit_power_law
from rlp_jax.train.metrics import plot_curves, read_metrics


@pytest.mark.parametrize("a,alpha,p_star", [(-3.0e4, 0.35, 0.62), (5.0e3, 0.2, 0.1)])
def test_fit_recovers_constants(a, alpha, p_star):
    compute = np.logspace(15, 19, 12)
    value = a / compute**alpha + p_star
    fit = fit_power_law(compute, value)
    assert fit["alpha"] == pytest.approx(alpha, rel=1e-3)
    assert fit["P_star"] == pytest.approx(p_star, abs=1e-4)
    assert fit["A"] == pytest.approx(a, rel=1e-2)
    assert fit["rmse"] < 1e-6


def test_fit_with_noise_stays_close():
    rng = np.random.default_rng(0)
    compute = np.logspace(15, 19, 30)
    value = -2.0e3 / compute**0.25 + 0.5 + rng.normal(0, 1e-3, compute.size)
    fit = fit_power_law(compute, value)
    assert fit["alpha"] == pytest.approx(0.25, rel=0.1)
    assert fit["P_star"] == pytest.approx(0.5, abs=0.01)


def test_too_few_points_is_a_user_error():
    with pytest.raises(UserError, match="at least 4"):
        fit_power_law([1, 2, 3], [1, 2, 3])
    with pytest.raises(UserError, match="flat"):
        fit_power_law([1, 2, 3, 4], [0.5, 0.5, 0.5, 0.5])


def test_plot_writes_png(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "metrics.jsonl", "w") as f:
        for step in range(1, 6):
            f.write(json.dumps({"step": step, "train/reward_mean": 0.1 * step}) + "\n")
    records = read_metrics(str(run))
    drawn = plot_curves({"rlp": (records, 1e12)}, ["train/reward_mean", "train/missing"],
                        str(tmp_path / "curves.png"), x_axis="flops")
    assert drawn == ["train/reward_mean"]
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UserError, match="run directory"):
        read_metrics(str(tmp_path / "nope"))


def test_report_cli_fits_each_run_against_its_flops(tmp_path):
    from rlp_jax.train import config as config_lib
    from rlp_jax.cli import main as cli_main
    from rlp_jax.cli.report_cmd import step_flops

    constants = {"rlp": (-40.0, 0.3, 0.7), "ntp": (-25.0, 0.25, 0.5)}
    for objective, (a, alpha, p_star) in constants.items():
        run = tmp_path / objective
        run.mkdir()
        cfg = config_lib.load_config(None, [f"run.objective={objective}"])
        (run / "config.yaml").write_text(config_lib.dump_yaml(cfg))
        per_step = step_flops(str(run))
        key = "eval/acc_think/hard" if objective == "rlp" else "eval/acc_no_think/all"
        with open(run / "metrics.jsonl", "w") as f:
            for step in range(10, 210, 10):
                f.write(json.dumps({"step": step, key: a / (step * per_step) ** alpha + p_star,
                                    "train/loss": 1.0 / step}) + "\n")
    assert step_flops(str(tmp_path / "rlp")) > 3 * step_flops(str(tmp_path / "ntp"))  # rollouts count
    out = tmp_path / "report"
    assert cli_main(["report", str(tmp_path / "rlp"), str(tmp_path / "ntp"), "--out", str(out)]) == 0
    fits = json.loads((out / "fits.json").read_text())["fits"]
    for name, key in (("rlp", "eval/acc_think/hard"), ("ntp", "eval/acc_no_think/all")):
        fit = fits[f"{name}:{key}"]
        a, alpha, p_star = constants[name]
        assert fit["alpha"] == pytest.approx(alpha, rel=1e-3)
        assert fit["P_star"] == pytest.approx(p_star, abs=1e-4)
    for png in ("curves_step.png", "curves_flops.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert cli_main(["report", str(tmp_path / "missing")]) == 2
