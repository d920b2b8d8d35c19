"""The RPT objective: host rewards from decoded completions, filtering, GRPO update, a full step."""

import jax
import jax.numpy as jnp
import numpy as np
from byte_bpe import tiny_byte_bpe

from rlp_jax.model import transformer as model
from rlp_jax.model.config import ModelConfig
from rlp_jax.objectives import make_objective
from rlp_jax.objectives.config import RPTConfig
from rlp_jax.objectives.rpt import Experience, rpt_rewards
from rlp_jax.rollout.config import RolloutConfig
from rlp_jax.rollout.thoughts import Rollout
from rlp_jax.train.optimizer import OptimizerConfig
from rlp_jax.train.state import init_state
from rlp_jax.train.step import learn, make_train_step

TOK = tiny_byte_bpe([" Paris", " is", " capital", "\\boxed{", "</think>"], specials=["<think>", "<eos>"])
CFG = ModelConfig(vocab_size=TOK.vocab_size, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8,
                  mlp_dim=48)
OCFG = OptimizerConfig(learning_rate=1e-2)
ROLLOUT = RolloutConfig(group_size=2, positions_per_window=1, thought_len=24, temperature=1.0,
                        min_context=2).with_markers(TOK)
EMA_DECAY = 0.99


def _rpt(pcfg=RPTConfig()):
    return make_objective("rpt", CFG, ROLLOUT, rpt=pcfg, tokenizer=TOK)


RCFG = _rpt().rollout_cfg


def rpt_update(state, window, roll, reward, keep):
    update = jax.jit(lambda *a: learn(_rpt(), OCFG, EMA_DECAY, *a))
    return update(state, window, Experience(roll=roll, keep=keep), reward)


def rpt_step(state, window, pcfg):
    return make_train_step(_rpt(pcfg), OCFG, EMA_DECAY, state)[0](state, window)


def _rollout(window, t, completions):
    """A hand-made rollout `[1, R]` whose completions decode to the given strings."""
    ids = [TOK.encode(c) for c in completions]
    length = RCFG.thought_len
    assert max(len(i) for i in ids) <= length
    thoughts = np.zeros((1, len(ids), length), np.int32)
    for r, i in enumerate(ids):
        thoughts[0, r, : len(i)] = i
    r = len(ids)
    return Rollout(t=jnp.full((1, r), t, jnp.int32), thoughts=jnp.asarray(thoughts),
                   lengths=jnp.asarray([[len(i) for i in ids]], jnp.int32),
                   logp=jnp.full((1, r, length), -1.0), s_pred=jnp.zeros((1, r)),
                   prediction=jnp.zeros((1, r), jnp.int32))


def test_rewards_from_decoded_completions():
    window = jnp.asarray([TOK.encode("The capital is Paris.")])
    t = len(TOK.encode("The capital"))  # the real continuation is " is Paris."
    roll = _rollout(window, t, ["hmm</think>\\boxed{ is}", "hmm</think>\\boxed{is}",
                                "</think>\\boxed{ is Paris}", "no answer"])
    rewards = rpt_rewards(roll, window, TOK, RPTConfig())
    np.testing.assert_array_equal(rewards, [[1.0, 0.0, 1.0, 0.0]])


def _state():
    params = model.init_params(CFG, jax.random.key(0))
    return init_state(params, OCFG, jax.random.key(1))


def _changed(a, b):
    return max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_filtered_or_uniform_groups_do_not_move_the_policy():
    window = jnp.asarray([TOK.encode("The capital is Paris.")])
    roll = _rollout(window, 3, ["a</think>\\boxed{ is}", "b</think>\\boxed{x}"])
    before = jax.tree.map(jnp.copy, _state().params)
    varied = jnp.asarray([[1.0, 0.0]])
    same = jnp.asarray([[1.0, 1.0]])

    state, metrics = rpt_update(_state(), window, roll, same, jnp.asarray([[True]]))
    assert _changed(state.params, before) == 0.0 and float(metrics["equal_reward_groups"]) == 1.0
    state, metrics = rpt_update(_state(), window, roll, varied, jnp.asarray([[False]]))
    assert _changed(state.params, before) == 0.0 and float(metrics["kept_positions"]) == 0.0
    state, metrics = rpt_update(_state(), window, roll, varied, jnp.asarray([[True]]))
    assert _changed(state.params, before) > 1e-4
    assert float(metrics["equal_reward_groups"]) == 0.0 and float(metrics["reward_mean"]) == 0.5


def test_full_step_runs_with_entropy_filtering():
    window = jnp.asarray([TOK.encode("The capital is Paris. The capital is")[:12]] * 2)
    state = _state()
    state, metrics = rpt_step(state, window, RPTConfig(entropy_threshold=0.0))
    assert int(state.step) == 1
    assert float(metrics["kept_positions"]) == 1.0  # a random model's entropy exceeds 0
    assert 0.0 <= float(metrics["reward_mean"]) <= 1.0
    assert 0 < float(metrics["completion_len"]) <= RCFG.thought_len
    _, metrics = rpt_step(state, window, RPTConfig(entropy_threshold=99.0))
    assert float(metrics["kept_positions"]) == 0.0
