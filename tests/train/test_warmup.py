"""The next-token warm-up: its own run in RUN_DIR/warmup, the objective starting from its
final weights, the run's before/after summary, and a resume that does not warm up again."""

import os

import pytest

from tests.train_helpers import TINY, metrics, run_train

pytestmark = pytest.mark.slow


def test_warmup_then_rlp_starts_from_its_weights_and_resumes_without_it(tmp_path):
    run_dir = tmp_path / "run"
    args = TINY + [f"run.run_dir={run_dir}", "warmup.steps=6", "run.steps=4", "run.eval_every=2",
                   "run.eval_at_start=true", "run.checkpoint_every=2"]
    done = run_train(args, cache=str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warm-up: 6 next-token steps" in done.stdout
    warm = metrics(run_dir / "warmup")
    assert [r["step"] for r in warm if "train/nll" in r] == list(range(1, 7))  # next-token steps
    assert os.path.isdir(run_dir / "warmup" / "checkpoints" / "6")
    main = metrics(run_dir)
    evals = {r["step"]: r for r in main if "eval/nll" in r}
    assert sorted(evals) == [0, 2, 4]
    assert all("train/reward_mean" in r for r in main if "train/loss" in r)  # RLP steps only
    # the step-0 eval of the RLP run sees exactly the warm-up's final weights
    warm_eval = next(r for r in warm if r["step"] == 6 and "eval/nll" in r)
    assert evals[0]["eval/nll"] == pytest.approx(warm_eval["eval/nll"], rel=1e-6)
    assert "held-out, step 0 -> step 4:" in done.stdout
    assert "information gain (nats)" in done.stdout

    again = run_train([*args[:-3], "run.steps=6", "run.eval_every=2", "run.eval_at_start=true",
                       "run.checkpoint_every=2"], cache=str(tmp_path / "cache"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "warm-up" not in again.stdout and "resumed from checkpoint step 4" in again.stdout
    assert len([r for r in metrics(run_dir / "warmup") if "train/nll" in r]) == 6  # not run again
    assert sorted(r["step"] for r in metrics(run_dir) if "eval/nll" in r) == [0, 2, 4, 6]


def test_warmup_with_the_ntp_objective_is_refused_in_one_line(tmp_path):
    done = run_train(TINY + [f"run.run_dir={tmp_path / 'r'}", "warmup.steps=3", "run.objective=ntp"])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("rlp-jax: error: warmup.steps")


def test_the_main_job_config_runs_end_to_end_on_its_world(tmp_path):
    """configs/tiny_sums.yaml, shortened: both built-in corpora prepared, the tokenizer trained
    on the warm-up corpus (markers and digits single tokens), warm-up, RLP, summary, thoughts."""
    import json

    from tests.train_helpers import REPO

    run_dir = tmp_path / "run"
    done = run_train(["--config", f"{REPO}/configs/tiny_sums.yaml", f"run.run_dir={run_dir}", "warmup.steps=30",
                      "run.steps=2", "run.eval_every=2", "run.eval_batches=1", "prepare.builtin_docs=400",
                      "optimizer.decay_steps=2", "run.progress=false"], cache=str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "held-out, step 0 -> step 2:" in done.stdout and "thinking accuracy, hard" in done.stdout
    rows = [json.loads(line) for line in (run_dir / "thoughts.jsonl").read_text().splitlines()]
    assert rows and {r["step"] for r in rows} == {0, 2}
    assert all(r["context"] and r["context"][-1] in "0123456789=" for r in rows)  # a problem's own text


def test_the_rpt_job_on_the_sums_world_runs_end_to_end(tmp_path):
    """configs/tiny_sums_rpt.yaml, shortened: the boxed warm-up corpus, its tokenizer, RPT on
    plain problems, and the summary's prefix-match reward before and after."""
    from tests.train_helpers import REPO

    run_dir = tmp_path / "run"
    done = run_train(["--config", f"{REPO}/configs/tiny_sums_rpt.yaml", f"run.run_dir={run_dir}",
                      "warmup.steps=30", "run.steps=2", "run.eval_every=2", "run.eval_batches=1",
                      "prepare.builtin_docs=400", "optimizer.decay_steps=2", "run.progress=false"],
                     cache=str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "held-out, step 0 -> step 2:" in done.stdout
    assert "prefix-match reward, first 1 -> last 1 steps:" in done.stdout
    steps = [r for r in metrics(run_dir) if "train/reward_mean" in r]
    assert len(steps) == 2 and all(0.0 <= r["train/reward_mean"] <= 1.0 for r in steps)
    assert all(r["train/eligible_positions"] > 0 for r in steps)  # digits and answers pass the entropy filter
