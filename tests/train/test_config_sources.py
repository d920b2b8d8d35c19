"""Where a config value comes from: a flag and an override naming the same key are
refused, and a model directory named on the command line replaces a config file's
architecture (the file's compute settings stay), while a file that names both is refused
with the file's name."""

import os

import pytest

from rlp_jax import cli
from rlp_jax.errors import UserError
from rlp_jax.model.config import ModelConfig
from rlp_jax.train import config, setup

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(REPO, "configs", "tiny.yaml")


@pytest.mark.parametrize("args", [["--run-dir", "/tmp/a", "run.run_dir=/tmp/b"],
                                  ["--init-from", "/m", "init_from=/n"],
                                  ["--process-id", "0", "distributed.process_id=1"]])
def test_a_flag_and_an_override_of_the_same_key_are_refused(args, capsys):
    assert cli.main(["train", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "both given" in err and args[0] in err, err


def test_a_model_directory_on_the_command_line_replaces_the_files_architecture(tmp_path):
    model_dir = str(tmp_path / "model")
    ModelConfig(vocab_size=300, d_model=48, n_layers=3, n_heads=3, n_kv_heads=1, head_dim=16, mlp_dim=96,
                max_seq_len=512).save(model_dir)
    cfg = config.load_config(TINY, [f"init_from={model_dir}"])  # tiny.yaml sets d_model, n_layers, ...
    model = setup._model_from(cfg.replace(init_from=setup.expand(cfg.init_from)))
    assert (model.d_model, model.n_layers, model.vocab_size) == (48, 3, 300)
    assert model.max_seq_len == 512  # neither the file's 256 nor the built-in tiny default
    kept = config.load_config(TINY, [f"init_from={model_dir}", "model.remat=full", "model.max_seq_len=128"])
    assert setup._model_from(kept).remat == "full" and setup._model_from(kept).max_seq_len == 128
    with pytest.raises(UserError, match="model.d_model cannot be set together with init_from"):
        config.load_config(TINY, [f"init_from={model_dir}", "model.d_model=64"])  # typed: a real clash


def test_init_from_with_the_tiny_config_fails_only_on_what_the_user_typed(tmp_path, capsys):
    code = cli.main(["train", "--config", TINY, "--init-from", str(tmp_path / "nope"), f"run.run_dir={tmp_path}/r"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "model directory not found" in err, err


def test_a_file_naming_both_init_from_and_an_architecture_is_refused_by_name(tmp_path):
    path = tmp_path / "both.yaml"
    path.write_text("init_from: /m\nmodel:\n  remat: full\n  n_layers: 4\n")
    with pytest.raises(UserError, match=rf"{path} sets both init_from and model.n_layers"):
        config.load_config(str(path))
    cfg = config.load_config(str(path), ["init_from=/other"])  # the command line's model wins
    assert cfg.init_from == "/other" and cfg.model.remat == "full"


def test_a_run_directory_on_gcs_is_refused_and_checkpoints_may_go_there():
    with pytest.raises(UserError, match="run.run_dir must be a local or mounted directory.*run.checkpoint_dir"):
        config.load_config(None, ["run.run_dir=gs://bucket/run"])
    assert config.load_config(None, ["run.checkpoint_dir=gs://bucket/run"]).run.checkpoint_dir == "gs://bucket/run"
