"""Outputs are never overwritten without --force, output paths are checked before any work,
and inputs that used to be accepted silently (or reported confusingly) end in one line.

Most cases call the CLI in-process (capfd sees what C libraries write to the process's
stderr too) and replace the expensive step with a function that fails the test, which shows
the check ran before the work; one case of each kind goes through a real subprocess.
"""

import errno
import json
import os
import shutil
import subprocess
import sys
import time

import jax
import pytest
from byte_bpe import tiny_byte_bpe

from rlp_jax.cli import main as cli_main
from rlp_jax.data.builtin import arithmetic_documents
from rlp_jax.model import transformer as model
from rlp_jax.model.config import ModelConfig
from rlp_jax.model.io import save_model

TOK = tiny_byte_bpe([" red", " blue", "Answer"], specials=["<think>", "</think>", "<eos>"])
CFG = ModelConfig(vocab_size=TOK.vocab_size, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=8,
                  mlp_dim=32, max_seq_len=64)
CORPUS = [d.text for d in arithmetic_documents(40, seed=1)]


def _error_line(capfd, rc, *fragments):
    """The command failed with exit 2 and exactly one `rlp-jax: error:` line holding `fragments`."""
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("rlp-jax: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _never(*_, **__):
    raise AssertionError("the command started its work before checking its outputs")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A tiny model directory (with its tokenizer) and a JSONL corpus, built once."""
    root = tmp_path_factory.mktemp("outputs")
    save_model(str(root / "model"), CFG, model.init_params(CFG, jax.random.key(0)), TOK)
    (root / "corpus.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in CORPUS))
    (root / "text.txt").write_text(" ".join(CORPUS))
    return root


# --- item 4: existing outputs are replaced only with --force --------------------------------

def test_export_keeps_a_users_config_json_unless_forced(assets, tmp_path, capfd):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "config.json").write_text('{"mine": true}')
    args = ["export", "--checkpoint", str(assets / "model"), "--to-hf", str(out)]
    _error_line(capfd, cli_main(args), "config.json", "--force")
    assert (out / "config.json").read_text() == '{"mine": true}' and not (out / "model.safetensors").exists()
    (out / "tokenizer.model").write_text("stale")  # an older export's tokenizer must not survive
    assert cli_main(args + ["--force"]) == 0
    assert json.loads((out / "config.json").read_text())["vocab_size"] == CFG.vocab_size
    assert (out / "model.safetensors").exists() and not (out / "tokenizer.model").exists()


def test_tokenizer_train_keeps_an_existing_tokenizer_unless_forced(assets, tmp_path, capfd):
    base = ["tokenizer", "train", "--data", str(assets / "corpus.jsonl"), "--vocab-size", "330"]
    for out, existing in ((tmp_path / "dir", tmp_path / "dir" / "tokenizer.model"),
                          (tmp_path / "tok.model", tmp_path / "tok.model")):
        existing.parent.mkdir(exist_ok=True)
        existing.write_bytes(b"precious")
        _error_line(capfd, cli_main(base + ["--out", str(out)]), "already", "--force")
        assert existing.read_bytes() == b"precious"
        assert cli_main(base + ["--out", str(out), "--force"]) == 0
        assert existing.read_bytes() != b"precious"
        capfd.readouterr()


def test_convert_and_prepare_replace_only_with_force(assets, tmp_path, capfd):
    from rlp_jax.convert.hf_export import export_hf
    from rlp_jax.data.tfds_io import dataset_summary

    export_hf(CFG, model.init_params(CFG, jax.random.key(1)), str(tmp_path / "hf"), TOK)
    convert = ["convert", "--from", f"hf:{tmp_path / 'hf'}", "--out", str(assets / "model")]
    _error_line(capfd, cli_main(convert), "already holds", "--force")
    shutil.copytree(assets / "model", tmp_path / "m")
    (tmp_path / "m" / "tokenizer.model").write_text("stale")
    convert[-1] = str(tmp_path / "m")
    assert cli_main(convert + ["--force"]) == 0
    assert not (tmp_path / "m" / "tokenizer.model").exists()  # else it would shadow the new tokenizer.json

    prepare = ["data", "prepare", "--name", "c", "--input", str(assets / "corpus.jsonl"), "--out", str(tmp_path / "d")]
    assert cli_main(prepare) == 0
    _error_line(capfd, cli_main(prepare), "already exists", "--force")
    assert cli_main(prepare + ["--validation-fraction", "0.5", "--force"]) == 0
    assert dataset_summary(str(tmp_path / "d" / "c" / "1.0.0")) == {"train": 20, "validation": 20}


# --- item 6: output paths are checked before any work; file-system failures are one line -----

@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "taken"
    path.write_text("a file, not a directory")
    return path


@pytest.mark.parametrize("command", ["convert", "fetch", "tokenizer", "eval", "report", "export"])
def test_out_naming_an_existing_file_is_refused_before_work(command, assets, a_file, monkeypatch, capfd):
    import rlp_jax.convert.fetch
    import rlp_jax.data.tfds_io
    import rlp_jax.evaluation.inputs
    import rlp_jax.train.metrics

    for module, name in ((rlp_jax.convert.fetch, "locate_gguf"), (rlp_jax.evaluation.inputs, "load_params"),
                         (rlp_jax.data.tfds_io, "read_texts"), (rlp_jax.train.metrics, "read_metrics")):
        monkeypatch.setattr(module, name, _never)
    argv = {
        "convert": ["convert", "--from", f"hf:{assets}", "--out", str(a_file)],
        "fetch": ["fetch", "smollm2-135m", "--out", str(a_file)],
        "tokenizer": ["tokenizer", "train", "--data", str(assets / "corpus.jsonl"), "--vocab-size", "330",
                      "--out", str(a_file)],
        "eval": ["eval", "--checkpoint", str(assets / "model"), "--text-file", str(assets / "text.txt"),
                 "--out", str(a_file)],
        "report": ["report", str(assets), "--out", str(a_file)],
        "export": ["export", "--checkpoint", str(assets / "model"), "--to-hf", str(a_file)],
    }[command]
    _error_line(capfd, cli_main(argv), str(a_file), "is a file")
    assert a_file.read_text() == "a file, not a directory"


def test_bench_and_downstream_check_their_output_files_first(assets, tmp_path, monkeypatch, capfd):
    import rlp_jax.bench
    import rlp_jax.evaluation.inputs

    monkeypatch.setattr(rlp_jax.bench, "run_bench", _never)
    monkeypatch.setattr(rlp_jax.evaluation.inputs, "load_params", _never)
    _error_line(capfd, cli_main(["bench", "--quick", "--out", str(tmp_path)]), "is a directory")
    (tmp_path / "b.json").write_text("{}")
    _error_line(capfd, cli_main(["bench", "--quick", "--markdown", str(tmp_path / "b.json")]), "already exists")
    (tmp_path / "task.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    _error_line(capfd, cli_main(["downstream", "--checkpoint", str(assets / "model"), "--task",
                                 str(tmp_path / "task.jsonl"), "--type", "gen", "--out", str(tmp_path / "b.json")]),
                "already exists", "--force")
    _error_line(capfd, cli_main(["eval", "--checkpoint", str(assets / "model"), "--text-file", "x",
                                 "--out", str(tmp_path / "b.json" / "sub")]), "is a file, not a directory")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to simulate a full disk")
def test_a_full_disk_while_writing_is_one_line_naming_the_path(assets, tmp_path, monkeypatch, capfd):
    os.symlink("/dev/full", tmp_path / "full.model")  # every write there fails with ENOSPC
    rc = cli_main(["tokenizer", "train", "--data", str(assets / "corpus.jsonl"), "--vocab-size", "330",
                   "--out", str(tmp_path / "full.model"), "--force"])
    _error_line(capfd, rc, "cannot write", "full.model", "No space left on device")

    # The CLI's backstop: an OSError from anywhere else is one line that names its path too.
    import rlp_jax.cli.report_cmd as report_cmd

    def disk_full(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/runs/x/metrics.jsonl")

    monkeypatch.setattr(report_cmd, "run", disk_full)
    _error_line(capfd, cli_main(["report", "x"]), "/runs/x/metrics.jsonl: No space left on device")


def test_fetch_onto_a_file_fails_at_once_in_a_real_process(a_file, tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", RLP_JAX_CACHE=str(tmp_path / "cache"))
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "rlp_jax", "fetch", "smollm2-135m", "--out", str(a_file)],
                            capture_output=True, text=True, timeout=120, env=env)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "is a file" in lines[0], result.stderr
    assert not (tmp_path / "cache").exists() and time.perf_counter() - start < 60


# --- item 8: silent acceptance --------------------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_sample_refuses_non_finite_temperature(assets, value, capfd):
    rc = cli_main(["sample", "--checkpoint", str(assets / "model"), "--prompt", "x", f"--temperature={value}"])
    _error_line(capfd, rc, "--temperature must be a finite number")


def test_ema_of_a_model_directory_is_refused(assets, tmp_path, capfd):
    for argv in (["eval", "--text-file", str(assets / "text.txt"), "--out", str(tmp_path / "e")],
                 ["export", "--to-hf", str(tmp_path / "hf")],
                 ["score", "--text", "hello there"]):
        rc = cli_main(argv + ["--checkpoint", str(assets / "model"), "--params", "ema"])
        _error_line(capfd, rc, "model directory", "no EMA")
    assert not (tmp_path / "e" / "eval.json").exists()


def test_a_tokenizer_of_another_vocabulary_is_refused(assets, tmp_path, capfd):
    from rlp_jax.errors import UserError
    from rlp_jax.evaluation.inputs import resolve_tokenizer

    other = tiny_byte_bpe([" green"], specials=["<eos>"])  # fits the embedding, other ids
    other.save(str(tmp_path / "other"))
    rc = cli_main(["eval", "--checkpoint", str(assets / "model"), "--text-file", str(assets / "text.txt"),
                   "--tokenizer", str(tmp_path / "other"), "--out", str(tmp_path / "e")])
    _error_line(capfd, rc, "is not the tokenizer the model was trained with", "drop --tokenizer")
    TOK.save(str(tmp_path / "copy"))  # the model's own tokenizer, saved elsewhere: fine
    assert resolve_tokenizer(str(tmp_path / "copy"), str(assets / "model"), CFG)[0].vocab_size == TOK.vocab_size
    # Without a tokenizer of the model's own only the size can be checked.
    small = ModelConfig(vocab_size=TOK.vocab_size - 1)
    with pytest.raises(UserError, match="embeds only"):
        resolve_tokenizer(str(tmp_path / "copy"), None, small)


@pytest.mark.parametrize("answer", ["true", "false", "1.0"])
def test_downstream_answer_must_be_an_integer_index(tmp_path, answer):
    from rlp_jax.errors import UserError
    from rlp_jax.evaluation.downstream import read_task

    (tmp_path / "t.jsonl").write_text(f'{{"question": "q", "choices": ["a", "b"], "answer": {answer}}}\n')
    with pytest.raises(UserError, match="index of the right choice"):
        read_task(str(tmp_path / "t.jsonl"), "mc")
    (tmp_path / "g.jsonl").write_text('{"question": "q", "answer": true}\n')
    with pytest.raises(UserError, match="a string or a number"):
        read_task(str(tmp_path / "g.jsonl"), "gen")


def test_fetch_into_a_directory_holding_another_model(assets, tmp_path, monkeypatch, capfd):
    import rlp_jax.convert.fetch as fetch

    monkeypatch.setattr(fetch, "locate_gguf", _never)
    shutil.copytree(assets / "model", tmp_path / "m")
    _error_line(capfd, cli_main(["fetch", "smollm2-135m", "--out", str(tmp_path / "m")]),
                "a model not fetched as this one", "--force")
    (tmp_path / "m" / fetch.FETCHED_FILE).write_text(json.dumps({"name": "qwen-9b"}))
    _error_line(capfd, cli_main(["fetch", "smollm2-135m", "--out", str(tmp_path / "m")]), "'qwen-9b'")
    (tmp_path / "m" / fetch.FETCHED_FILE).write_text(json.dumps({"name": "smollm2-135m"}))
    assert fetch.fetch_model("smollm2-135m", str(tmp_path / "m")) == str(tmp_path / "m")  # no download


# --- confusing though clean -----------------------------------------------------------------

def test_a_directory_where_a_file_is_expected_is_called_one(assets, tmp_path, capfd):
    d = str(tmp_path)
    model_dir = str(assets / "model")
    for argv in (["score", "--checkpoint", model_dir, "--file", d],
                 ["eval", "--checkpoint", model_dir, "--text-file", d, "--seq-len", "32", "--out", str(tmp_path / "e")],
                 ["downstream", "--checkpoint", model_dir, "--task", d, "--type", "mc"],
                 ["convert", "--from", f"gguf:{d}", "--out", str(tmp_path / "o")]):
        _error_line(capfd, cli_main(argv), d, "is a directory")
    (tmp_path / "hf" / "config.json").mkdir(parents=True)
    _error_line(capfd, cli_main(["convert", "--from", f"hf:{tmp_path / 'hf'}", "--out", str(tmp_path / "o")]),
                "config.json is a directory")


def test_one_text_file_still_gets_a_validation_split(tmp_path, capfd):
    from rlp_jax.data import prepare
    from rlp_jax.data.tfds_io import dataset_summary, open_source

    text = "".join(CORPUS)
    (tmp_path / "book.txt").write_text(text)
    path = prepare("book", [str(tmp_path / "book.txt")], str(tmp_path / "o"), validation_fraction=0.1)
    assert dataset_summary(path) == {"train": 9, "validation": 1}
    parts = sorted((int(r["doc_id"]), r["text"].decode()) for split in ("train", "validation")
                   for r in (open_source(path, split)[i] for i in range(len(open_source(path, split)))))
    assert "".join(p for _, p in parts) == text  # nothing lost, in order
    assert all(p.endswith("\n") for _, p in parts)  # cut at line breaks
    (tmp_path / "word.txt").write_text("word")
    rc = cli_main(["data", "prepare", "--name", "w", "--input", str(tmp_path / "word.txt"), "--out", str(tmp_path / "o")])
    _error_line(capfd, rc, "the only document", "--validation-fraction 0")


def test_tokenizer_vocab_minimum_is_the_true_one_and_failures_leave_nothing(assets, tmp_path, capfd):
    import re

    base = ["tokenizer", "train", "--data", str(assets / "corpus.jsonl"), "--out"]
    line = _error_line(capfd, cli_main(base + [str(tmp_path / "t"), "--vocab-size", "5"]), "needs at least")
    minimum = int(re.search(r"needs at least (\d+)", line).group(1))
    assert not (tmp_path / "t").exists()  # a failed run creates no directory
    _error_line(capfd, cli_main(base + [str(tmp_path / "t"), "--vocab-size", str(minimum - 1)]),
                f"needs at least {minimum}")
    assert cli_main(base + [str(tmp_path / "t"), "--vocab-size", str(minimum)]) == 0
