"""Bad rollout, loss and optimizer settings fail early with one-line UserErrors naming the key."""

import pytest

from rlp_jax.errors import UserError
from rlp_jax.objectives.config import RLPConfig
from rlp_jax.rollout.config import RolloutConfig
from rlp_jax.train import config as train_config
from rlp_jax.train.optimizer import OptimizerConfig


def _minibatches_that_do_not_split_k():
    RLPConfig(minibatches=3).check_split(RolloutConfig().positions_per_window)


def _ema_decay_one():
    train_config.load_config(None, ["ema_decay=1.0"])


@pytest.mark.parametrize("make, field", [
    (lambda: RolloutConfig(group_size=1), "rollout.group_size"),
    (lambda: RLPConfig(advantage="ppo"), "rlp.advantage"),
    (lambda: RolloutConfig(position_strategy="all"), "rollout.position_strategy"),
    (lambda: RolloutConfig(thought_len=0), "rollout.thought_len"),
    (_minibatches_that_do_not_split_k, "rlp.minibatches"),
    (lambda: RolloutConfig(temperature=0.0), "rollout.temperature"),
    (_ema_decay_one, "ema_decay"),
    (lambda: RolloutConfig(close_ids=(-1,)), "rollout.close_ids"),
])
def test_bad_fields_raise_one_line_errors(make, field):
    with pytest.raises(UserError) as err:
        make()
    assert field in str(err.value) and "\n" not in str(err.value)


def test_impossible_positions_or_thought_length_for_the_context():
    cfg = RolloutConfig(positions_per_window=8, min_context=60, thought_len=32, open_ids=(1,), close_ids=(2,))
    with pytest.raises(UserError, match="positions_per_window"):
        cfg.check(window_len=64, vocab_size=100)
    cfg.check(window_len=128, vocab_size=100, max_seq_len=200)
    with pytest.raises(UserError, match="thought_len"):
        cfg.check(window_len=128, vocab_size=100, max_seq_len=150)
    with pytest.raises(UserError, match="outside the model vocabulary"):
        cfg.check(window_len=128, vocab_size=2)
    with pytest.raises(UserError, match="open_ids"):
        RolloutConfig().check(window_len=128, vocab_size=100)


def test_markers_from_tokenizer_text():
    class Tok:
        def token_to_id(self, text):
            return {"<think>": 7}.get(text)

        def encode(self, text):
            return [ord(ch) % 50 for ch in text]

    cfg = RolloutConfig().with_markers(Tok())
    assert cfg.open_ids == (7,) and cfg.close_ids == tuple(ord(ch) % 50 for ch in "</think>")
    assert RolloutConfig(close_ids=(3,)).with_markers(Tok()).close_ids == (3,)
    assert cfg.branch_len == 1 + 64 + 8 and cfg.branches == 128


def test_optimizer_config_errors():
    with pytest.raises(UserError, match="optimizer.schedule"):
        OptimizerConfig(schedule="exp")
    with pytest.raises(UserError, match="optimizer.decay_steps"):
        OptimizerConfig(schedule="cosine")
    with pytest.raises(UserError, match="optimizer.learning_rate"):
        OptimizerConfig(learning_rate=0.0)
