"""Every shipped config loads and resolves against a model directory of its architecture.

The model directories are fakes: the architecture's `model_config.json` and a small
tokenizer with the thought markers, so this runs anywhere in seconds. What it guards is
the merge: the model directory's values (max_seq_len above all) survive, and only the keys
a config writes change them.
"""

import glob
import os

import pytest
import yaml

from byte_bpe import tiny_byte_bpe
from rlp_jax.errors import UserError
from rlp_jax.model.presets import architecture
from rlp_jax.train import config, setup
from rlp_jax.train.config import INIT_FROM_MODEL_KEYS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml")))
TOKENIZER = tiny_byte_bpe([" the"], specials=["<think>", "</think>", "<|endoftext|>"])


def _model_dir(path, arch: str, **changes) -> str:
    architecture(arch).replace(**changes).save(str(path))
    TOKENIZER.save(str(path))
    return str(path)


def _with_fakes(name: str, tmp_path) -> tuple[str, dict]:
    """The config rewritten to point at a fake model directory and an existing data path."""
    tree = yaml.safe_load(open(os.path.join(REPO, "configs", name)))
    if tree.get("init_from"):
        tree["init_from"] = _model_dir(tmp_path / "model", tree["architecture"])
        if not tree["data"]["data"].startswith(("builtin:", "synthetic")):
            (tmp_path / "corpus").mkdir()
            tree["data"]["data"] = str(tmp_path / "corpus")
    tree.setdefault("run", {})["run_dir"] = str(tmp_path / "run")
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tree))
    return str(path), tree


@pytest.mark.parametrize("name", [os.path.basename(p) for p in CONFIGS])
def test_every_shipped_config_resolves_against_its_architecture(name, tmp_path):
    path, tree = _with_fakes(name, tmp_path)
    cfg = config.load_config(path)
    if tree.get("init_from"):  # (a built-in corpus config is resolved by the tests that train it)
        cfg, _ = setup.resolve(cfg)
    if tree.get("init_from"):
        written = tree.get("model", {})
        expected = architecture(tree["architecture"]).replace(**written)
        assert cfg.model == expected, name  # the directory's values, the file's keys on top
        assert set(written) <= set(INIT_FROM_MODEL_KEYS)
    thought_len = tree.get("rollout", {}).get("thought_len")
    if thought_len:
        assert cfg.rollout.thought_len == thought_len  # the paper's 2048 fits the model's positions


def test_every_config_with_init_from_names_its_architecture():
    for path in CONFIGS:
        tree = yaml.safe_load(open(path))
        if tree.get("init_from"):
            architecture(tree.get("architecture", ""))  # known: `rlp-jax compile` needs the shape


def test_a_key_the_user_writes_wins_even_where_it_equals_a_default(tmp_path):
    model_dir = _model_dir(tmp_path / "model", "tiny", dtype="bfloat16", max_seq_len=4096, head_chunk=0)
    args = [f"init_from={model_dir}", "data.data=synthetic", "rollout.open_ids=[1]", "rollout.close_ids=[2]",
            "rollout.thought_len=8"]
    cfg = config.load_config(None, args + ["model.dtype=float32", "model.max_seq_len=2048",
                                           "model.head_chunk=1024"])
    model = setup._model_from(cfg)  # float32, 2048 and 1024 are ModelConfig's defaults
    assert (model.dtype, model.max_seq_len, model.head_chunk) == ("float32", 2048, 1024)
    untouched = setup._model_from(config.load_config(None, args))
    assert (untouched.dtype, untouched.max_seq_len, untouched.head_chunk) == ("bfloat16", 4096, 0)
    assert "model_keys_set" not in config.dump_yaml(cfg)


def test_architecture_without_init_from_is_the_named_shape_and_must_agree_with_one(tmp_path):
    cfg = config.load_config(None, ["architecture=smollm2-135m", "model.max_seq_len=512", "data.seq_len=64"])
    assert cfg.model == architecture("smollm2-135m").replace(max_seq_len=512)
    with pytest.raises(UserError, match="model.d_model cannot be set together with architecture"):
        config.load_config(None, ["architecture=smollm2-135m", "model.d_model=64"])
    with pytest.raises(UserError, match="unknown architecture 'qwen9'"):
        config.load_config(None, ["architecture=qwen9"])
    other = _model_dir(tmp_path / "other", "tiny")
    cfg = config.load_config(None, [f"init_from={other}", "architecture=smollm2-135m", "data.data=synthetic",
                                    "rollout.open_ids=[1]", "rollout.close_ids=[2]"])
    with pytest.raises(UserError, match="init_from's model is not architecture smollm2-135m: vocab_size is 256"):
        setup._model_from(cfg)
