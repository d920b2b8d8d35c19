"""Faults in a run directory, as real processes meet them: a finite divergence on resume, a
damaged newest checkpoint (train, export and eval fall back to the previous one), a full
disk (a size-limited file: the write fails with EFBIG) and the half-written metrics line
it leaves. One tiny run is trained per module and copied for each case."""

import os
import shutil
import subprocess
import sys

import pytest

from rlp_jax.train import checkpoint
from train_helpers import REPO, TINY, env, metrics, run_train

RUN = TINY + ["run.steps=6", "run.checkpoint_every=2", "run.eval_every=3", "run.eval_batches=1"]

# Run a command with every file limited to `limit` bytes; writes past it fail with EFBIG
# (SIGXFSZ ignored), as they would on a full disk.
FULL_DISK = """
import resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.argv = ["rlp-jax"] + sys.argv[2:]
runpy.run_module("rlp_jax", run_name="__main__")
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    done = run_train(RUN + [f"run.run_dir={run_dir}"])
    assert done.returncode == 0, done.stderr[-2000:]
    return run_dir


@pytest.fixture
def run_dir(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def _steps(run_dir):
    return sorted(os.listdir(run_dir / "checkpoints"))


def _one_line(stderr, *fragments):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr and len(lines) == 1, stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _damage(run_dir, how):
    params = run_dir / "checkpoints" / "6" / "params"
    if how == "truncate":
        files = [params / "ocdbt.process_0" / "d" / n for n in os.listdir(params / "ocdbt.process_0" / "d")]
        biggest = max(files, key=os.path.getsize)
        os.truncate(biggest, 100)
    else:
        os.remove(params / "manifest.ocdbt")


def test_finite_divergence_on_resume_stops_naming_the_last_good_step(run_dir):
    # lr 1e6 keeps everything finite but moves θ by ~1e6 × |θ|: the model collapses in one step.
    out = run_train(RUN + [f"run.run_dir={run_dir}", "run.steps=12", "optimizer.learning_rate=1e6",
                           "run.nonfinite=stop"])
    assert out.returncode == 2
    _one_line(out.stderr, "diverging update", "at step 7", "the last good checkpoint is step 6")
    assert _steps(run_dir) == ["2", "4", "6"]


def test_damaged_newest_checkpoint_resumes_from_the_previous(run_dir):
    _damage(run_dir, "truncate")
    out = run_train(RUN + [f"run.run_dir={run_dir}", "run.steps=8"])
    assert out.returncode == 0, out.stderr[-3000:]
    _one_line(out.stderr, "warning: checkpoint 6 is damaged", "6.damaged", "resuming from checkpoint 4")
    assert "resumed from checkpoint step 4" in out.stdout
    assert _steps(run_dir) == ["4", "6", "6.damaged", "8"]  # 6 written again; keep=3 rotated 2 out
    assert [r["step"] for r in metrics(run_dir) if "train/loss" in r] == list(range(1, 9))


def test_damaged_newest_checkpoint_export_falls_back(run_dir, tmp_path):
    _damage(run_dir, "manifest")
    out = subprocess.run([sys.executable, "-m", "rlp_jax", "export", "--checkpoint", str(run_dir), "--to-hf",
                          str(tmp_path / "hf")], env=env(), capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-3000:]
    _one_line(out.stderr, "warning: checkpoint 6 is damaged (NOT_FOUND", "using checkpoint 4")
    assert (tmp_path / "hf" / "config.json").is_file()
    assert _steps(run_dir) == ["2", "4", "6"]  # a reader renames nothing


def test_eval_inputs_take_the_step_a_path_names(run_dir, capsys):
    from rlp_jax.evaluation.inputs import load_params, run_config

    step, _, _, params = checkpoint.load(str(run_dir / "checkpoints" / "4"))
    assert step == 4 and capsys.readouterr().err == ""
    cfg, via_eval, _, _, picked = load_params(str(run_dir / "checkpoints" / "4"), with_step=True)
    assert picked == 4 and cfg.d_model == 32 and run_config(str(run_dir / "checkpoints" / "4")).run.steps == 6
    for a, b in zip(*map(lambda t: __import__("jax").tree.leaves(t), (params, via_eval))):
        assert (a == b).all()
    with pytest.raises(Exception, match="no checkpoint step 5"):
        checkpoint.load(str(run_dir / "checkpoints"), step=5)


def test_full_disk_is_one_line_and_the_run_resumes_once_freed(run_dir, tmp_path):
    wrapper = tmp_path / "full_disk.py"
    wrapper.write_text(FULL_DISK)
    args = RUN + [f"run.run_dir={run_dir}", "run.steps=8"]
    # 16 kB: metrics.jsonl and TensorBoard fit, a checkpoint's array files do not.
    full = subprocess.run([sys.executable, str(wrapper), "16000", "train", *args], env=env(), capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert full.returncode == 2
    _one_line(full.stderr, "cannot write checkpoint 8", "File too large", "the last good checkpoint is step 6")
    assert [s for s in _steps(run_dir) if s.isdigit()] == ["2", "4", "6"]
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 9, "train/lo')  # what a full disk leaves mid-line
    freed = run_train(args)
    assert freed.returncode == 0, freed.stderr[-3000:]
    assert "resumed from checkpoint step 6" in freed.stdout
    _one_line(freed.stderr, "dropped a half-written last line")
    assert _steps(run_dir) == ["4", "6", "8"]  # the temporary directory of the failed save is gone
    assert [r["step"] for r in metrics(run_dir) if "train/loss" in r] == list(range(1, 9))
