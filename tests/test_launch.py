"""Launch scripts: `--dry-run` prints the exact commands (checked here) and mistakes give
one-line errors. Nothing is executed."""

import os
import shlex
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dry(script, *args):
    out = subprocess.run([sys.executable, os.path.join(REPO, "launch", script), *args, "--dry-run"],
                         capture_output=True, text=True, cwd=REPO, timeout=60)
    return out.returncode, out.stdout.splitlines(), out.stderr


def test_tpu_pod_creates_installs_runs_on_all_workers_and_collects_logs():
    code, lines, _ = dry("tpu_pod.py", "--name", "rlp", "--zone", "us-east5-a", "--accelerator", "v5p-32",
                         "--config", "configs/qwen3_1.7b_v5p.yaml", "run.steps=10")
    assert code == 0
    assert lines[0] == ("gcloud compute tpus tpu-vm create rlp --zone=us-east5-a --accelerator-type=v5p-32 "
                        "--version=v2-alpha-tpuv5")
    run = [line for line in lines if "rlp-jax train" in line]
    assert len(run) == 1 and "--worker=all" in run[0]
    inner = shlex.split(run[0].split("--command=", 1)[1])[0]
    assert inner == ("cd rlp_jax && rlp-jax train --config configs/qwen3_1.7b_v5p.yaml run.steps=10 "
                     "run.run_dir=runs/tpu > train.log 2>&1")
    assert any("pip install" in line and "--worker=all" in line for line in lines)
    logs = [line for line in lines if "train.log logs/rlp/worker" in line]
    assert len(logs) == 4  # v5p-32: 16 chips, 4 hosts
    assert logs[3].endswith("--worker=3")


def test_tpu_queued_resource_waits_until_active():
    code, lines, _ = dry("tpu_pod.py", "--name", "q", "--zone", "z", "--accelerator", "v4-8", "--queued", "--spot",
                         "--config", "configs/tiny.yaml")
    assert code == 0
    assert lines[0].startswith("gcloud compute tpus queued-resources create q --node-id=q") and lines[0].endswith("--spot")
    assert "grep -q ACTIVE" in lines[1]
    assert sum("train.log logs/q/worker" in line for line in lines) == 1


def test_xpk_workload():
    code, lines, _ = dry("gke_xpk.py", "--cluster", "c1", "--workload", "rlp-8b", "--tpu-type", "v5p-512",
                         "--num-slices", "2", "--config", "configs/qwen3_8b_v5p_pod.yaml", "--create-cluster")
    assert code == 0 and len(lines) == 3
    assert lines[0] == "xpk cluster create --cluster=c1 --tpu-type=v5p-512 --num-slices=2"
    assert lines[1].startswith("xpk workload create --cluster=c1 --workload=rlp-8b --tpu-type=v5p-512 --num-slices=2")
    assert "rlp-jax train --config configs/qwen3_8b_v5p_pod.yaml run.run_dir=/tmp/rlp-8b" in lines[1]


def test_gpu_host():
    code, lines, _ = dry("gpu_host.py", "--gpus", "4", "--config", "configs/qwen3_1.7b_gpu.yaml", "run.steps=5")
    assert code == 0
    assert lines == ["pip install -q -r requirements.txt -e . 'jax[cuda12]'",
                     "CUDA_VISIBLE_DEVICES=0,1,2,3 XLA_PYTHON_CLIENT_MEM_FRACTION=0.92 rlp-jax train --config "
                     "configs/qwen3_1.7b_gpu.yaml run.steps=5 2>&1 | tee train.log"]


def test_slurm_script_passes_coordinator_and_rank():
    code, lines, _ = dry("slurm.py", "--nodes", "4", "--gpus-per-node", "8", "--partition", "gpu",
                         "--config", "configs/qwen3_1.7b_gpu.yaml")
    assert code == 0
    text = "\n".join(lines)
    for expected in ("#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8",
                     "#SBATCH --partition=gpu", "export HEAD=$(scontrol show hostnames"):
        assert expected in text
    srun = next(line for line in lines if line.startswith("srun"))
    assert shlex.split(srun)[-1] == ("rlp-jax train --config configs/qwen3_1.7b_gpu.yaml --coordinator=$HEAD:12355 "
                                     "--num-processes=$SLURM_NTASKS --process-id=$SLURM_PROCID")
    assert lines[-1] == "sbatch rlp_jax_job.sbatch"


@pytest.mark.parametrize("script,args,message", [
    ("tpu_pod.py", ["--name", "x", "--zone", "z", "--accelerator", "tpu-big"], "--accelerator"),
    ("gke_xpk.py", ["--cluster", "c", "--workload", "Bad_Name", "--tpu-type", "v5p-8"], "--workload"),
    ("gpu_host.py", ["--gpus", "0"], "--gpus"),
    ("slurm.py", ["--nodes", "0"], "--nodes"),
    ("gpu_host.py", ["notanoverride"], "notanoverride"),
])
def test_launch_mistakes_are_one_line(script, args, message):
    code, lines, err = dry(script, *args, "--config", "configs/tiny.yaml")
    assert code == 2 and lines == []
    assert len(err.strip().splitlines()) == 1 and message in err and err.startswith("launch: error:")
