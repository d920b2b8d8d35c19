"""User mistakes end in one line on stderr and a non-zero exit, never a traceback."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest


def _cli(*args, cwd=None):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "rlp_jax", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=env, cwd=cwd)


def _assert_one_line_error(result, *fragments):
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _write_gguf(path, arch="llama"):
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_block_count(1)
    writer.add_context_length(64)
    writer.add_embedding_length(8)
    writer.add_feed_forward_length(16)
    writer.add_head_count(2)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["a", "b", "c", "d"])
    writer.add_tensor("token_embd.weight", np.ones((4, 8), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_missing_gguf_path(tmp_path):
    _assert_one_line_error(_cli("convert", "--from", f"gguf:{tmp_path}/nope.gguf", "--out", tmp_path / "o"),
                           "not found")


def test_missing_hf_dir(tmp_path):
    _assert_one_line_error(_cli("convert", "--from", f"hf:{tmp_path}/nope", "--out", tmp_path / "o"),
                           "not found")


def test_bad_source_kind(tmp_path):
    _assert_one_line_error(_cli("convert", "--from", "onnx:x", "--out", tmp_path / "o"), "gguf:PATH")


def test_unsupported_hf_architecture(tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    _assert_one_line_error(_cli("convert", "--from", f"hf:{tmp_path}/hf", "--out", tmp_path / "o"),
                           "unsupported model_type", "gpt2")


def test_unsupported_gguf_architecture(tmp_path):
    _write_gguf(tmp_path / "m.gguf", arch="gpt2")
    _assert_one_line_error(_cli("convert", "--from", f"gguf:{tmp_path}/m.gguf", "--out", tmp_path / "o"),
                           "unsupported GGUF architecture", "gpt2")


def test_truncated_gguf(tmp_path):
    _write_gguf(tmp_path / "m.gguf")
    data = (tmp_path / "m.gguf").read_bytes()
    (tmp_path / "t.gguf").write_bytes(data[: len(data) // 2])
    _assert_one_line_error(_cli("convert", "--from", f"gguf:{tmp_path}/t.gguf", "--out", tmp_path / "o"),
                           "t.gguf")
    assert not (tmp_path / "o" / "params").exists()


def test_garbage_gguf(tmp_path):
    (tmp_path / "g.gguf").write_bytes(b"not a gguf file at all" * 10)
    _assert_one_line_error(_cli("convert", "--from", f"gguf:{tmp_path}/g.gguf", "--out", tmp_path / "o"),
                           "cannot read GGUF")


def test_corrupt_safetensors(tmp_path):
    hf = tmp_path / "hf"
    hf.mkdir()
    config = {"model_type": "llama", "vocab_size": 16, "hidden_size": 8, "intermediate_size": 16,
              "num_hidden_layers": 1, "num_attention_heads": 2}
    (hf / "config.json").write_text(json.dumps(config))
    (hf / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    _assert_one_line_error(_cli("convert", "--from", f"hf:{hf}", "--out", tmp_path / "o"),
                           "model.safetensors")


def test_score_missing_checkpoint(tmp_path):
    _assert_one_line_error(_cli("score", "--checkpoint", tmp_path / "none", "--text", "hi"), "not found")


def test_score_on_a_directory_that_is_not_a_checkpoint(tmp_path):
    _assert_one_line_error(_cli("score", "--checkpoint", tmp_path, "--text", "hi"), "model_config.json")


def test_score_missing_text_file(tmp_path):
    from rlp_jax.model import transformer as model
    from rlp_jax.model.config import ModelConfig
    from rlp_jax.model.io import save_model

    import jax

    cfg = ModelConfig()
    save_model(str(tmp_path / "m"), cfg, model.init_params(cfg, jax.random.key(0)))
    _assert_one_line_error(_cli("score", "--checkpoint", tmp_path / "m", "--file", tmp_path / "x.txt"),
                           "x.txt")


def test_unknown_fetch_model():
    result = _cli("fetch", "gpt-17")
    assert result.returncode == 2 and "invalid choice" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [["--max-new-tokens", "0"], ["--top-p", "0"], ["--temperature", "-1"]])
def test_sample_bad_settings(tmp_path, args):
    _assert_one_line_error(_cli("sample", "--checkpoint", tmp_path, "--prompt", "x", *args), "--top-p")
