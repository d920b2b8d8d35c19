"""`rlp-jax bench` machinery: equal thoughts, JSON keys, peak lookup, Markdown, CLI errors."""

import json

import pytest

from rlp_jax.bench import PEAKS, Shape, load_preset, peak_for, run_bench, to_markdown
from rlp_jax.bench import rollout as rollout_bench
from rlp_jax.cli import main

SMALL = Shape(window=48, positions=2, group=2, thought=4)


@pytest.fixture(scope="module")
def result():
    return run_bench("tiny", suites=("rollout", "sampler", "step"), quick=True, shape=SMALL, sweep=False,
                     sampler_shape=(1, 8, 4), repeats=1, log=lambda *_: None)


def test_quick_rollout_point_equal_thoughts_positive_ratio():
    cfg, params = load_preset("tiny")
    row = rollout_bench.bench_point(params, cfg, SMALL, repeats=1)
    assert row["thoughts_equal"] is True
    assert row["mean_thought_len"] == SMALL.thought  # the close marker is never sampled
    assert row["ratio"] > 0 and row["prefix_shared_s"] > 0 and row["reencode_s"] > 0
    assert row["s_pred_max_abs_diff"] < 1e-4
    assert row["N"] == SMALL.batch * SMALL.positions * SMALL.group


def test_json_has_expected_keys(result):
    text = json.dumps(result)  # JSON-serialisable as is
    back = json.loads(text)
    assert {"meta", "rollout", "sampler", "step"} <= set(back)
    assert {"date", "device_kind", "platform", "jax", "jaxlib", "model", "params", "peak"} <= set(back["meta"])
    row = back["rollout"]["rows"][0]
    assert {"axis", "T", "K", "G", "L", "B", "N", "prefix_shared_s", "reencode_s", "ratio",
            "thoughts_equal"} <= set(row)
    assert row["axis"] == "base" and row["thoughts_equal"]
    samp = back["sampler"]["rows"]
    assert [r["mode"] for r in samp] == ["greedy", "temperature 0.7"]
    assert all(r["ours_tokens_per_s"] > 0 and r["ours_compile_s"] > 0 for r in samp)
    assert samp[0]["transformers_tokens_per_s"] is None  # the tiny model has no transformers peer
    step = back["step"]
    assert set(step["phases"]) == {"ema_pass", "prefill", "decode", "update", "total"}
    for phase in step["phases"].values():
        assert phase["flops"] > 0 and phase["time_s"] >= 0
    assert step["phases"]["total"]["flops"] == pytest.approx(
        sum(step["phases"][n]["flops"] for n in ("ema_pass", "prefill", "decode", "update")))
    assert step["compile_s"] > 0 and step["peak_memory"]["bytes"] > 0 and step["peak_memory"]["source"]


def test_decode_roofline_counts_weights_and_kv(result):
    from rlp_jax.evaluation.flops import decode_bytes_per_step

    cfg, _ = load_preset("tiny")
    kv = cfg.n_layers * 2 * cfg.n_kv_heads * cfg.head_dim * 4  # float32 keys + values per token
    assert decode_bytes_per_step(cfg, 2, 100, 8, 10) == cfg.param_count() * 4 + kv * 2 * (100 + 8 * 10)
    roof = result["step"]["decode_roofline"]
    assert roof["steps"] == SMALL.thought + 2
    assert roof["bytes_per_step"] > cfg.param_count() * 4
    assert roof["bytes_per_s"] == pytest.approx(roof["bytes_per_step"] / roof["step_s"])
    assert roof["reference"].startswith("measured stream") and roof["reference_bytes_per_s"] > 1e8
    assert roof["fraction"] == pytest.approx(roof["bytes_per_s"] / roof["reference_bytes_per_s"])
    assert "decode: " in to_markdown(result) and "GB/s" in to_markdown(result)


def test_peak_table_lookup():
    assert peak_for("NVIDIA H100 80GB HBM3")[0] == "H100 SXM"
    assert peak_for("NVIDIA H100 PCIe") is None  # a different, slower part
    assert peak_for("NVIDIA H200")[1]["hbm_bytes_per_s"] == pytest.approx(4.8e12)
    assert peak_for("TPU v4")[0] == "TPU v4"
    assert peak_for("TPU v5 lite")[0] == "TPU v5e"
    assert peak_for("TPU v5p")[0] == "TPU v5p"
    assert peak_for("TPU v6 lite")[0] == "TPU v6e"
    assert peak_for("cpu") is None
    assert PEAKS["H100 SXM"]["bf16_flops"] == pytest.approx(989e12)


def test_markdown_renders(result):
    text = to_markdown(result)
    assert "jax " in text and "cpu" in text and result["meta"]["date"] in text
    assert "| base | 48 | 2 | 2 | 4 | 1 | 4 |" in text
    assert "| greedy | 1 | 8 | 4 |" in text
    for phase in ("ema_pass", "prefill", "decode", "update", "total"):
        assert f"| {phase} |" in text


def test_utilization_with_known_peak():
    fake = {"meta": {"model": "m", "params": 1e6, "dtype": "bfloat16", "device_kind": "NVIDIA H100 80GB HBM3",
                     "device_count": 1, "platform": "gpu", "host_cpus": 16, "date": "d", "jax": "j",
                     "jaxlib": "j", "python": "3", "peak": {"name": "H100 SXM", **PEAKS["H100 SXM"]}}}
    assert "989 TFLOP/s" in to_markdown(fake)


def test_unknown_model_exit_code_2(capsys):
    assert main(["bench", "--model", "gpt-5", "--quick"]) == 2
    err = capsys.readouterr().err
    assert "unknown bench model" in err and len(err.strip().splitlines()) == 1


def test_impossible_shape_exit_code_2(capsys):
    assert main(["bench", "--model", "tiny", "--suite", "rollout", "--quick", "--thought", "5000"]) == 2
    assert "impossible" in capsys.readouterr().err
    assert main(["bench", "--model", "tiny", "--suite", "nope"]) == 2
