"""Long commands draw a tqdm bar on stderr for a person at a terminal, and nothing otherwise
(a pipe, a log file, `--quiet`); library noise (absl WARNING lines) never reaches stderr."""

import io
import json
import os
import subprocess
import sys

import jax
import pytest
from byte_bpe import tiny_byte_bpe

from rlp_jax import progress
from rlp_jax.cli import build_parser
from rlp_jax.cli import main as cli_main
from rlp_jax.model import transformer as model
from rlp_jax.model.config import ModelConfig
from rlp_jax.model.io import save_model

TOK = tiny_byte_bpe([" red", " blue"], specials=["<eos>"])
CFG = ModelConfig(vocab_size=TOK.vocab_size, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8,
                  mlp_dim=48, max_seq_len=64)
TEXT = " ".join(f"{i} + {i} = {2 * i}." for i in range(40))


class _Terminal(io.StringIO):
    """stderr as a person's terminal."""

    def isatty(self):
        return True


@pytest.fixture
def stderr(monkeypatch, request):
    """`stderr(tty)`: replace sys.stderr by a buffer that is (or is not) a terminal."""
    def make(tty=True):
        stream = _Terminal() if tty else io.StringIO()
        monkeypatch.setattr(sys, "stderr", stream)
        return stream

    yield make
    progress.set_quiet(False)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("progress")
    save_model(str(root / "model"), CFG, model.init_params(CFG, jax.random.key(0)), TOK)
    (root / "text.txt").write_text(TEXT)
    (root / "mc.jsonl").write_text("\n".join(json.dumps({"question": f"{i}: red or blue?", "choices": ["red", "blue"],
                                                         "answer": i % 2}) for i in range(3)))
    return root


def _bar_lines(text):
    """The bar states tqdm drew (each redraw starts with a carriage return)."""
    return [part for part in text.replace("\n", "\r").split("\r") if "|" in part]


def test_quiet_is_an_option_of_every_subcommand():
    def leaves(parser, path):
        subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not subs:
            yield path, parser
        for action in subs:
            for name, sub in action.choices.items():
                yield from leaves(sub, path + [name])

    found = list(leaves(build_parser(), []))
    assert len(found) >= 13
    for path, parser in found:
        assert "--quiet" in parser._option_string_actions, path
    args = build_parser().parse_args(["data", "--quiet", "inspect", "--data", "d", "--tokenizer", "t"])
    assert args.quiet
    assert build_parser().parse_args(["data", "inspect", "--data", "d", "--tokenizer", "t", "-q"]).quiet
    assert not hasattr(build_parser().parse_args(["fetch", "smollm2-135m"]), "quiet")


def test_bars_only_on_a_terminal_without_quiet(stderr):
    for tty, quiet, drawn in ((True, False, True), (False, False, False), (True, True, False)):
        stream = stderr(tty)
        progress.set_quiet(quiet)
        assert progress.enabled() is drawn
        assert list(progress.bar(range(3), desc="work")) == [0, 1, 2]
        assert bool(_bar_lines(stream.getvalue())) is drawn


def test_eval_draws_a_bar_per_batch_on_a_terminal_only(files, stderr, tmp_path):
    args = ["eval", "--checkpoint", files / "model", "--text-file", files / "text.txt", "--seq-len", "16",
            "--batch-size", "1", "--batches", "2", "--out", tmp_path / "ev", "--force"]
    term = stderr(True)
    assert cli_main([str(a) for a in args]) == 0
    drawn = _bar_lines(term.getvalue())
    assert drawn and drawn[-1].startswith("eval: 100%") and "2/2" in drawn[-1], drawn
    assert any("no-think pass" in line for line in drawn)
    quiet = stderr(True)
    assert cli_main([str(a) for a in args + ["--quiet"]]) == 0
    piped = stderr(False)
    assert cli_main([str(a) for a in args]) == 0
    assert quiet.getvalue() == "" and piped.getvalue() == ""


def test_export_convert_downstream_bars(files, stderr, tmp_path):
    term = stderr(True)
    assert cli_main(["export", "--checkpoint", str(files / "model"), "--to-hf", str(tmp_path / "hf")]) == 0
    assert _bar_lines(term.getvalue())[-1].startswith("export: 100%")
    term = stderr(True)
    assert cli_main(["convert", "--from", f"hf:{tmp_path / 'hf'}", "--out", str(tmp_path / "back")]) == 0
    drawn = _bar_lines(term.getvalue())
    assert drawn[-1].startswith("convert: 100%") and "tensor" in drawn[-1], drawn
    assert any("model.layers.1.mlp.down_proj.weight" in line for line in drawn)
    term = stderr(True)
    assert cli_main(["downstream", "--checkpoint", str(files / "model"), "--task", str(files / "mc.jsonl"),
                     "--type", "mc"]) == 0
    assert "3/3" in _bar_lines(term.getvalue())[-1]
    piped = stderr(False)
    assert cli_main(["export", "--checkpoint", str(files / "model"), "--to-hf", str(tmp_path / "hf2")]) == 0
    assert piped.getvalue() == ""


def test_data_prepare_and_tokenizer_train_bars(stderr, tmp_path):
    from rlp_jax.data.builtin import arithmetic_documents

    docs = [d.text for d in arithmetic_documents(30, seed=1)]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"text": d}) for d in docs))
    term = stderr(True)
    assert cli_main(["data", "prepare", "--name", "p", "--input", str(tmp_path / "a.jsonl"),
                     "--out", str(tmp_path / "data")]) == 0
    drawn = _bar_lines(term.getvalue())
    assert any(line.startswith("data prepare p: 100%") and "30/30" in line for line in drawn), drawn
    term = stderr(True)
    assert cli_main(["tokenizer", "train", "--data", str(tmp_path / "a.jsonl"), "--vocab-size", "330",
                     "--out", str(tmp_path / "tok")]) == 0
    drawn = _bar_lines(term.getvalue())
    assert any(line.startswith("tokenizer train: 100%") for line in drawn), drawn
    piped = stderr(False)
    assert cli_main(["data", "prepare", "--name", "q", "--input", str(tmp_path / "a.jsonl"),
                     "--out", str(tmp_path / "data")]) == 0
    assert piped.getvalue() == ""


def test_bench_names_the_phase_it_compiles(stderr, monkeypatch, capsys):
    from rlp_jax.bench import rollout

    def fake_point(params, cfg, shape, repeats, phase):
        phase("compiling prefix-shared")
        return {**shape.as_dict(), "prefix_shared_s": 1.0, "reencode_s": 2.0, "ratio": 2.0,
                "thoughts_equal": True, "mean_thought_len": 8.0}

    monkeypatch.setattr(rollout, "bench_point", fake_point)
    term = stderr(True)
    result = rollout.run(None, CFG, rollout.QUICK_BASE, {"T": (64,)}, repeats=1, log=progress.log)
    assert len(result["rows"]) == 2
    drawn = _bar_lines(term.getvalue())
    assert any("T: compiling prefix-shared" in line for line in drawn), drawn
    assert drawn[-1].startswith("bench rollout: 100%")
    assert capsys.readouterr().out.count("rollout ") == 2  # result lines on stdout, apart from the bar


def test_train_bar_follows_the_terminal(stderr, tmp_path):
    from rlp_jax.train.metrics import MetricsLogger

    for tty, drawn in ((False, False), (True, True)):
        stream = stderr(tty)
        logger = MetricsLogger(str(tmp_path / str(tty)), True, 0, 4)
        logger.bar(2, {"loss": 1.0})
        logger.close()
        assert bool(_bar_lines(stream.getvalue())) is drawn


def test_an_error_after_a_bar_starts_on_its_own_line(files, stderr, tmp_path):
    task = tmp_path / "gen.jsonl"
    task.write_text(json.dumps({"question": "x" * 80, "answer": "1"}))
    term = stderr(True)
    assert cli_main(["downstream", "--checkpoint", str(files / "model"), "--task", str(task),
                     "--type", "gen"]) == 2
    last = term.getvalue().splitlines()[-1]
    assert last.startswith("rlp-jax: error: a prompt of"), term.getvalue()


def test_absl_warnings_silenced_errors_kept():
    import logging

    from absl import logging as absl_logging

    absl = logging.getLogger("absl")
    verbosity, level = absl_logging.get_verbosity(), absl.level
    try:
        progress.silence_library_warnings()
        assert absl.isEnabledFor(logging.ERROR) and not absl.isEnabledFor(logging.WARNING)
    finally:  # process-wide: later tests on this worker see absl as they found it
        absl_logging.set_verbosity(verbosity)
        absl.setLevel(level)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished one-step run (next-token objective: the cheapest step to compile)."""
    from train_helpers import TINY

    root = tmp_path_factory.mktemp("run")
    args = TINY + [f"model.vocab_size={TOK.vocab_size}", "run.objective=ntp", "run.steps=1",
                   "run.checkpoint_every=1", f"run.run_dir={root / 'run'}"]
    assert cli_main(["train", *args]) == 0
    TOK.save(str(root / "tok"))
    (root / "text.txt").write_text(TEXT)
    return root


def test_eval_of_a_run_prints_no_library_warnings(run_dir, tmp_path):
    """Orbax logs absl WARNING lines for every read-only checkpoint manager; none may show."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    result = subprocess.run(
        [sys.executable, "-m", "rlp_jax", "eval", "--checkpoint", str(run_dir / "run"), "--text-file",
         str(run_dir / "text.txt"), "--tokenizer", str(run_dir / "tok"), "--seq-len", "16", "--batches", "1",
         "--out", str(tmp_path / "ev")], capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # not a terminal: no bar either
    assert (tmp_path / "ev" / "eval.json").is_file()
