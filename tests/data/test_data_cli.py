"""User errors of `rlp-jax data` / `rlp-jax tokenizer` end as one stderr line and exit 2."""

import json
import subprocess
import sys
import textwrap

import pytest

from rlp_jax.data.builtin import arithmetic_documents
from rlp_jax.data.sp_train import train_sentencepiece

# Runs the real dispatcher (`rlp_jax.cli.main`) in a fresh process.
DRIVER = textwrap.dedent("""
    import sys
    import rlp_jax.cli as cli
    sys.exit(cli.main(sys.argv[1:]))
""")


def rlp_jax(*args, cwd=None):
    return subprocess.run([sys.executable, "-c", DRIVER, *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlp-jax: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    docs = [d.text for d in arithmetic_documents(40, seed=1)]
    (root / "a.jsonl").write_text("\n".join(json.dumps({"text": d}) for d in docs))
    result = rlp_jax("data", "prepare", "--name", "ok", "--input", root / "a.jsonl", "--out", root / "data")
    assert result.returncode == 0, result.stderr
    assert "train: 38 documents, validation: 2 documents" in result.stdout
    tok = train_sentencepiece(docs, str(root / "tok"), vocab_size=330)
    return root, tok


def test_prepare_and_inspect_succeed(dataset):
    root, tok = dataset
    result = rlp_jax("data", "inspect", "--data", root / "data", "--tokenizer", tok,
                     "--seq-len", 128, "--batch-size", 2, "--batches", 3)
    assert result.returncode == 0, result.stderr
    assert "tokens int32[2, 128]" in result.stdout and "throughput:" in result.stdout


def test_empty_corpus(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.txt").write_text("  \n\n")
    result = rlp_jax("data", "prepare", "--name", "e", "--input", tmp_path / "*.txt", "--out", tmp_path / "o")
    assert_one_line_error(result, "empty corpus")


def test_no_matching_inputs(tmp_path):
    result = rlp_jax("data", "prepare", "--name", "e", "--input", tmp_path / "*.txt", "--out", tmp_path / "o")
    assert_one_line_error(result, "no input files match")


def test_undecodable_bytes(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"fine line\nthen \xff\xfe bad bytes\n")
    result = rlp_jax("data", "prepare", "--name", "b", "--input", tmp_path / "bad.txt", "--out", tmp_path / "o")
    assert_one_line_error(result, "bad.txt", "undecodable bytes", "at byte 15 (line 2)")


def test_documents_shorter_than_minimum_context(tmp_path):
    (tmp_path / "a.jsonl").write_text('"a long enough document for the minimum"\n"tiny"\n')
    args = ("data", "prepare", "--name", "s", "--input", tmp_path / "a.jsonl", "--out", tmp_path / "o",
            "--min-chars", 20)
    assert_one_line_error(rlp_jax(*args), "1 document(s) are shorter than the minimum context of 20",
                          "a.jsonl:2")
    result = rlp_jax(*args, "--drop-short", "--validation-fraction", 0)
    assert result.returncode == 0 and "train: 1 documents" in result.stdout


def test_tokenizer_larger_than_model_embedding(dataset, tmp_path):
    root, tok = dataset
    assert_one_line_error(rlp_jax("data", "inspect", "--data", root / "data", "--tokenizer", tok,
                                  "--seq-len", 32, "--batch-size", 2, "--model-vocab-size", 320),
                          "tokenizer vocabulary (330) is larger than the model's embedding (320 rows)")
    assert_one_line_error(rlp_jax("tokenizer", "train", "--data", root / "data", "--vocab-size", 1000,
                                  "--out", tmp_path / "t", "--model-vocab-size", 512),
                          "tokenizer vocabulary (1000) is larger than the model's embedding (512 rows)")


def test_missing_data_dir(tmp_path, dataset):
    _, tok = dataset
    assert_one_line_error(rlp_jax("data", "inspect", "--data", tmp_path / "nope", "--tokenizer", tok),
                          "data dir not found")
    assert_one_line_error(rlp_jax("tokenizer", "train", "--data", tmp_path / "nope", "--vocab-size", 300,
                                  "--out", tmp_path / "t"), "data dir not found")
    (tmp_path / "plain").mkdir()
    assert_one_line_error(rlp_jax("data", "inspect", "--data", tmp_path / "plain", "--tokenizer", tok),
                          "not a TFDS data dir")


def test_prepare_refuses_to_overwrite(dataset):
    root, _ = dataset
    result = rlp_jax("data", "prepare", "--name", "ok", "--input", root / "a.jsonl", "--out", root / "data")
    assert_one_line_error(result, "already exists")


def test_through_python_m_rlp_jax(tmp_path):
    """The same errors through the full `python -m rlp_jax` dispatcher."""
    repo = __import__("pathlib").Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-m", "rlp_jax", "data", "prepare", "--name", "x", "--input",
                             str(tmp_path / "missing" / "*.txt"), "--out", str(tmp_path / "o")],
                            capture_output=True, text=True, timeout=120, cwd=repo)
    assert_one_line_error(result, "no input files match")
