"""`run.objective=rpt` through the training driver: RPT metrics logged, checkpoints written,
one-line errors for what RPT cannot do."""

from train_helpers import REPO, metrics, run_train


def test_rpt_objective_trains_and_logs(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(["--config", f"{REPO}/configs/tiny_rpt.yaml", f"run.run_dir={run_dir}", "run.steps=3",
                        "run.eval_every=0", "run.checkpoint_every=3", "run.progress=false",
                        "prepare.builtin_docs=200"], cache=str(tmp_path / "cache"), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    train = [r for r in metrics(run_dir) if "train/loss" in r]
    assert [r["step"] for r in train] == [1, 2, 3]
    for record in train:
        assert 0.0 <= record["train/reward_mean"] <= 1.0
        assert 0.0 <= record["train/kept_positions"] <= 1.0
        assert 0.0 <= record["train/equal_reward_groups"] <= 1.0
        assert record["train/completion_len"] > 0
    assert (run_dir / "checkpoints" / "3").is_dir()


def test_rpt_on_synthetic_data_is_refused(tmp_path):
    result = run_train(["run.objective=rpt", "data.data=synthetic", f"run.run_dir={tmp_path}/r"])
    assert result.returncode == 2
    assert "needs real data" in result.stderr and "Traceback" not in result.stderr
