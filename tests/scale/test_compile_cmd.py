"""`rlp-jax compile` on a small TPU slice: the tiny config compiles and reports memory, and
a config that cannot fit ends in one line with exit 2 (libtpu compiles for abstract devices
on this CPU)."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(REPO, "configs", "tiny.yaml")


def _compile(*args):
    return subprocess.run([sys.executable, "-m", "rlp_jax", "compile", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=600, env={**os.environ, "JAX_PLATFORMS": "cpu"})


def test_the_tiny_config_compiles_for_a_v5e_slice_and_reports_per_chip_memory(tmp_path):
    out = tmp_path / "figures.json"
    done = _compile("--config", TINY, "--topology", "v5e-4", "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["devices"] == 4 and figures["chip"] == "TPU v5e"
    train, evaluate = figures["programs"]
    assert (train["program"], evaluate["program"]) == ("train step", "eval step")
    for program in (train, evaluate):
        assert 0 < program["temporaries"] < program["peak"] < program["hbm"]
        assert program["flops"] > 0 and program["decode_loop_collectives"]["loops"] == 1
        assert len(program["largest_values"]) == 10
    # The state is sharded over the 4 chips (fsdp): each holds a quarter of the params, Adam's two
    # moments and the EMA. The train step's arguments are that state (TPU tiles pad its small
    # dimensions to 128, so up to a few times more for this tiny model).
    quarter = figures["params"] * 4 / 4  # float32 bytes
    state = figures["state"]
    assert state["params"] == state["ema_params"] == quarter and state["opt_state"] >= 2 * quarter
    assert sum(state.values()) <= train["arguments"] < 3 * sum(state.values())
    assert "train step: compiled in" in done.stdout and "fits: largest peak" in done.stdout
    assert "collectives inside the decode loop (1 loop)" in done.stdout


def test_a_config_that_cannot_fit_is_one_line_and_exit_2():
    # A 2-layer model with 3.3B parameters: its float32 state (params, Adam, EMA) is 52 GB
    # spread over 4 chips of 16 GiB.
    done = _compile("--config", TINY, "--topology", "v5e-4", "--no-eval", "run.objective=ntp",
                    "model.d_model=8192", "model.mlp_dim=65536", "model.n_heads=64", "model.head_dim=128")
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith(("compile", "\r"))]
    assert done.returncode == 2, done.stderr[-3000:]
    assert len(lines) == 1 and "does not fit v5e-4" in lines[0] and "GiB" in lines[0], done.stderr[-3000:]
    assert "Traceback" not in done.stderr


def test_an_unknown_topology_is_refused_before_anything_compiles():
    done = _compile("--config", TINY, "--topology", "v9-8")
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0
    assert "unknown topology 'v9-8'" in done.stderr


def test_a_gpu_host_without_the_cuda_plugin_is_one_line():
    import importlib.util

    if importlib.util.find_spec("jax_cuda12_plugin") is not None:
        pytest.skip("the gpu-aot extra is installed here: compiling for GPUs works")
    done = _compile("--config", TINY, "--topology", "h100x8", "--no-eval")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr[-2000:]
    assert "cannot describe h100x8" in done.stderr and "gpu-aot" in done.stderr


def test_xlas_out_of_memory_errors_become_one_line_in_binary_units():
    from types import SimpleNamespace

    from rlp_jax.scale.compile import CompileError, explain

    target = SimpleNamespace(name="v5p-128")
    temporaries = RuntimeError("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO "
                               "temporaries (219.42G) exceeds available HBM (95.74G).\nmore lines")
    assert explain(CompileError("train step", temporaries), target) == (
        "train step does not fit v5p-128: XLA needs 219.42 GiB per chip (HLO temporaries) of the chip's "
        "95.74 GiB HBM")
    other = RuntimeError("INTERNAL: something else\ndetails")
    assert explain(CompileError("eval step", other), target) == \
        "eval step does not compile for v5p-128: INTERNAL: something else"
