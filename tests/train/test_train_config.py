"""Config: YAML + overrides with type coercion, the shipped configs, and one-line errors
for user mistakes through the real CLI entry point."""

import glob
import os

import pytest

from rlp_jax import cli
from rlp_jax.train import config
from rlp_jax.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(REPO, "configs", "tiny.yaml")


def test_defaults_are_the_tiny_config_and_overrides_coerce_types():
    assert config.load_config(None) == config.load_config(TINY)
    cfg = config.load_config(TINY, ["rollout.group_size=8", "optimizer.learning_rate=1e-5", "rollout.open_ids=[5, 6]",
                                    "data.num_epochs=null", "run.async_checkpoint=false", "mesh.fsdp=2",
                                    "model.rope_theta=500000", "run.objective=ntp"])
    assert cfg.rollout.group_size == 8 and cfg.optimizer.learning_rate == 1e-5  # "1e-5" is a YAML string
    assert cfg.rollout.open_ids == (5, 6) and cfg.data.num_epochs is None and cfg.run.async_checkpoint is False
    assert cfg.mesh.fsdp == 2 and cfg.model.rope_theta == 500000.0 and isinstance(cfg.model.rope_theta, float)
    assert cfg.model.d_model == 64  # untouched keys keep the file's values


def test_resolved_yaml_round_trips(tmp_path):
    cfg = config.load_config(TINY, ["rollout.close_ids=[3]", "data.num_epochs=2"])
    path = tmp_path / "config.yaml"
    path.write_text(config.dump_yaml(cfg))
    assert config.from_dict(config.read_yaml(str(path))) == cfg


def test_shipped_configs_are_valid_and_the_paper_settings_hold():
    files = sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml")))
    assert len(files) >= 5
    for path in files:
        config.load_config(path)
    for name in ("qwen3_1.7b_gpu", "qwen3_1.7b_v5p"):
        cfg = config.load_config(os.path.join(REPO, "configs", f"{name}.yaml"))
        assert (cfg.rollout.group_size, cfg.rollout.temperature, cfg.optimizer.learning_rate) == (16, 0.7, 1e-6)
        assert cfg.optimizer.schedule == "constant" and cfg.data.seq_len == 2048 and cfg.rollout.thought_len == 2048
    v5p = config.load_config(os.path.join(REPO, "configs", "qwen3_1.7b_v5p.yaml"))
    assert v5p.data.batch_size * v5p.rollout.positions_per_window == 512  # the paper's prompts per step


MISTAKES = [
    (["rollout.grup_size=4"], "rollout.grup_size"),  # unknown key
    (["rollout.group_size=abc"], "rollout.group_size"),  # wrong type
    (["rollout.group_size=1"], "rollout.group_size"),  # invalid value
    (["rollout.group_size"], "rollout.group_size"),  # override without a value
    (["rlp=3"], "rlp"),  # a section given a value
    (["run.objective=dpo"], "run.objective"),
    (["run.nonfinite=ignore"], "run.nonfinite"),
    (["rollout.thought_len=500"], "rollout.thought_len"),  # longer than model.max_seq_len allows
    (["rollout.positions_per_window=60"], "rollout.positions_per_window"),  # more than the window offers
    (["init_from=/x", "model.d_model=128"], "model.d_model"),  # architecture clash
    (["init_from=/no/such/model"], "init_from"),
    (["data.data=/no/such/corpus"], "data.data"),
    (["data.data=synthetic"], "rollout.open_ids"),  # no tokenizer, no markers
    (["distributed.coordinator_address=localhost"], "distributed.coordinator_address"),
    (["distributed.coordinator_address=127.0.0.1:1"], "distributed.num_processes"),
    (["mesh.data=2", "mesh.fsdp=1"], "mesh"),  # 2 devices wanted, 1 here
    (["--config", "/no/such.yaml"], "/no/such.yaml"),
    (["--init-from", "/no/model/dir"], "/no/model/dir"),
]


@pytest.mark.parametrize("args,key", MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_user_mistakes_give_one_line_errors(args, key, capsys, tmp_path):
    code = cli.main(["train", *args, f"run.run_dir={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("rlp-jax: error:"), err
    assert key in err


def test_malformed_yaml_and_non_mapping(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: [unclosed\n")
    with pytest.raises(UserError, match="cannot parse config"):
        config.load_config(str(bad))
    bad.write_text("- just\n- a list\n")
    with pytest.raises(UserError, match="must be a mapping"):
        config.load_config(str(bad))


def test_thought_len_defaults_to_the_papers_2048_where_the_model_allows():
    from rlp_jax.rollout.config import PAPER_THOUGHT_LEN

    assert PAPER_THOUGHT_LEN == 2048
    assert config.load_config(None).rollout.thought_len == 8  # the built-in tiny job spells its own
    big = config.load_config(None, ["model.max_seq_len=4096", "data.seq_len=1024"])
    assert big.rollout.thought_len == -1 and not big.rollout.allow_short_thoughts  # auto, resolved at start
    markers = big.rollout.replace(open_ids=(1,), close_ids=(2, 3))
    assert markers.resolve_thought_len(1024, 4096).thought_len == 2048
    assert markers.resolve_thought_len(1024, 2048).thought_len == 2048 - 1024 - 3  # what the model allows
    assert markers.replace(thought_len=64).resolve_thought_len(1024, 4096).thought_len == 64  # set: kept
    assert config.load_config(None, ["model.max_seq_len=4096", "rollout.thought_len=64"]).rollout.thought_len == 64
    short = markers.replace(thought_len=64)
    assert "rollout.thought_len=64" in short.short_thought_warning(1_700_000_000)
    assert short.short_thought_warning(100_000) is None  # tiny/test models
    assert short.replace(allow_short_thoughts=True).short_thought_warning(1_700_000_000) is None
    assert markers.replace(thought_len=512).short_thought_warning(1_700_000_000) is None
    assert config.load_config(TINY).rollout.allow_short_thoughts
