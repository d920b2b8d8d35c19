"""The RPT objective: host rewards from decoded completions, the template, a fixed proxy's
filter (filtered positions cost nothing), long predictions, dynamic sampling, a full step."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from byte_bpe import tiny_byte_bpe

from rlp_jax.model import transformer as model
from rlp_jax.model.config import ModelConfig
from rlp_jax.objectives import make_objective
from rlp_jax.objectives import rpt_slots
from rlp_jax.objectives.config import RPTConfig
from rlp_jax.objectives.prefix_match import continuation_boundaries
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
ROLLOUT = RolloutConfig(group_size=2, positions_per_window=1, thought_len=32, temperature=1.0,
                        min_context=2).with_markers(TOK)
EMA_DECAY = 0.99
SHORT = RPTConfig(template="{context}", lookahead=1)  # no instruction: short test branches


def _rpt(pcfg=SHORT):
    return make_objective("rpt", CFG, ROLLOUT, rpt=pcfg, tokenizer=TOK)


RCFG = _rpt().rollout_cfg


@functools.lru_cache
def _update():
    return jax.jit(lambda *a: learn(_rpt(), OCFG, EMA_DECAY, *a))  # compiled once for the module


def rpt_update(state, window, roll, reward, valid):
    update = _update()
    experience = Experience(roll=roll, windows=window, valid=valid, stats=jnp.zeros(3))
    return update(state, window, experience, reward)


def rpt_step(state, window, pcfg):
    return make_train_step(_rpt(pcfg), OCFG, EMA_DECAY, state)[0](state, window)


def _rollout(t, completions, rows=1):
    """A hand-made rollout `[rows, R]` whose completions decode to the given strings."""
    ids = [TOK.encode(c) for c in completions]
    length = RCFG.thought_len
    assert max(len(i) for i in ids) <= length
    r = len(ids) // rows
    thoughts = np.zeros((rows * r, length), np.int32)
    for k, i in enumerate(ids):
        thoughts[k, : len(i)] = i
    lengths = np.asarray([len(i) for i in ids], np.int32).reshape(rows, r)
    return Rollout(t=jnp.broadcast_to(jnp.asarray(t, jnp.int32).reshape(rows, -1), (rows, r)),
                   thoughts=jnp.asarray(thoughts.reshape(rows, r, length)), lengths=jnp.asarray(lengths),
                   logp=jnp.full((rows, r, length), -1.0), s_pred=jnp.zeros((rows, r)),
                   prediction=jnp.zeros((rows, r), jnp.int32))


def _rewards(window, roll, valid, pcfg=SHORT):
    return rpt_rewards(roll, window, valid, TOK, pcfg, ROLLOUT.group_size)


def test_rewards_from_decoded_completions_after_the_thought():
    window = jnp.asarray([TOK.encode("The capital is Paris.")])
    t = len(TOK.encode("The capital"))  # the real continuation is " is Paris."
    roll = _rollout(t, ["hmm</think>\\boxed{ is}", "hmm</think>\\boxed{is}",
                        "</think>\\boxed{ is Paris}", "no answer",
                        "\\boxed{ is}</think> so", "no close \\boxed{ is}"])
    rewards = _rewards(window, roll, np.ones((1, 3), bool))
    np.testing.assert_array_equal(rewards, [[1.0, 0.0, 1.0, 0.0, 0.0, 0.0]])  # boxed before </think>: 0
    assert _rewards(window, roll, np.asarray([[True, False, True]]))[0, 2] == 0.0  # invalid group: 0


def test_a_twelve_token_correct_prediction_earns_one():
    text = "The capital is Paris. The capital is Paris. The capital is"
    ids = TOK.encode(text)
    t = 3
    assert len(ids) - t >= 12
    truth = TOK.decode(ids[:t + 12])[len(TOK.decode(ids[:t])):]
    roll = _rollout(t, ["</think>\\boxed{" + truth + "}", "</think>\\boxed{" + truth + "x}"])
    rewards = _rewards(jnp.asarray([ids]), roll, np.ones((1, 1), bool))
    np.testing.assert_array_equal(rewards, [[1.0, 0.0]])


def test_template_instruction_is_teacher_forced_before_the_open_marker():
    pcfg = RPTConfig(template="{context} [next?]")
    rcfg = _rpt(pcfg).rollout_cfg
    assert rcfg.open_ids == tuple(TOK.encode(" [next?]")) + ROLLOUT.open_ids
    assert rcfg.close_ids == (TOK.eos_id,)
    assert RPTConfig().prompt_suffix.endswith("within \\boxed{} after your thinking.]\n")


def _state():
    params = model.init_params(CFG, jax.random.key(0))
    return init_state(params, OCFG, jax.random.key(1))


def _changed(a, b):
    return max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_kl_term_scores_the_fixed_reference():
    """rpt.kl_beta > 0: the update scores the kept θ_0, so its KL to the policy it started
    from is exactly 0 on the first update and the loss stays finite."""
    window = jnp.asarray([TOK.encode("The capital is Paris.")])
    roll = _rollout(3, ["a</think>\\boxed{ is}", "b</think>\\boxed{x}"])
    objective = _rpt(SHORT.replace(kl_beta=0.1))
    assert objective.needs_reference
    state = init_state(model.init_params(CFG, jax.random.key(0)), OCFG, jax.random.key(1), reference=True)
    experience = Experience(roll=roll, windows=window, valid=jnp.asarray([[True]]), stats=jnp.zeros(3))
    _, metrics = jax.jit(lambda *a: learn(objective, OCFG, EMA_DECAY, *a))(
        state, window, experience, jnp.asarray([[1.0, 0.0]]))
    assert float(metrics["kl_ref"]) == 0.0 and np.isfinite(float(metrics["loss"]))


def test_invalid_or_uniform_groups_do_not_move_the_policy():
    window = jnp.asarray([TOK.encode("The capital is Paris.")])
    roll = _rollout(3, ["a</think>\\boxed{ is}", "b</think>\\boxed{x}"])
    before = jax.tree.map(jnp.copy, _state().params)
    varied, same = jnp.asarray([[1.0, 0.0]]), jnp.asarray([[1.0, 1.0]])
    state, _ = rpt_update(_state(), window, roll, same, jnp.asarray([[True]]))
    assert _changed(state.params, before) == 0.0
    state, metrics = rpt_update(_state(), window, roll, varied, jnp.asarray([[False]]))
    assert _changed(state.params, before) == 0.0 and float(metrics["kept_positions"]) == 0.0
    state, metrics = rpt_update(_state(), window, roll, varied, jnp.asarray([[True]]))
    assert _changed(state.params, before) > 1e-4 and float(metrics["reward_mean"]) == 0.5


def test_slots_are_drawn_only_among_eligible_positions():
    entropy = np.zeros((2, 10))
    entropy[0, [3, 5]] = 1.0  # window 0: two hard positions
    entropy[1, [1, 4, 9]] = 1.0  # window 1: t=1 before min_context, t=9 inside the lookahead
    eligible = rpt_slots.eligible_positions(entropy, 0.5, min_context=2, lookahead=2)
    assert sorted(zip(*np.nonzero(eligible))) == [(0, 3), (0, 5), (1, 4)]
    rows, t, valid = rpt_slots.draw_slots(eligible, 4, np.random.default_rng(0))
    assert valid.tolist() == [True, True, True, False]  # 3 eligible pairs fill 3 of the 4 slots
    assert sorted(zip(rows[valid].tolist(), t[valid].tolist())) == [(0, 3), (0, 5), (1, 4)]
    # 2 of window 0's positions ride in the slots window 1 could not fill
    assert rpt_slots.candidate_positions(10, 2, 2) == 7


def test_a_filtered_position_costs_no_rollout_and_no_loss():
    objective = _rpt()
    window = jnp.asarray([TOK.encode("The capital is Paris. The capital")[:10]] * 2)
    plan = (np.asarray([0, 1]), np.asarray([4, 6]), np.asarray([True, False]))
    experience = objective.rollout(_state().params, None, window, jax.random.key(3), plan)
    lengths = np.asarray(experience.roll.lengths)
    assert lengths[0].max() >= 1 and lengths[1].tolist() == [0, 0]  # the invalid slot sampled nothing
    reward = jnp.asarray([[1.0, 0.0], [1.0, 0.0]])
    batch, _ = objective.loss_batch(experience, reward, window, None)
    one = jax.tree.map(lambda a: a[:1], batch)
    loss_both, _ = objective.loss(_state().params, batch)
    loss_one, _ = objective.loss(_state().params, one)
    np.testing.assert_allclose(loss_both, loss_one, rtol=1e-6, atol=1e-7)  # not in the denominator


def _truth(window, t):
    context = window[max(0, t - SHORT.context_tokens):t]
    data, bounds = continuation_boundaries(TOK, context, window[t:].tolist())
    return data[: bounds[0]].decode("utf-8")


def test_dynamic_sampling_refills_to_the_full_batch():
    window = np.asarray([TOK.encode("The capital is Paris. The capital is Paris.")[:14]] * 2)
    proxy = (model.init_params(CFG, jax.random.key(0)), CFG)
    objective = _rpt(RPTConfig(template="{context}", lookahead=1, entropy_threshold=0.0,
                               dynamic_sampling_from=5, max_refills=3))
    calls = []

    def roll(attempt, plan):
        rows, t, valid = plan
        calls.append(attempt)
        right = [f"</think>\\boxed{{{_truth(window[r], int(p))}}}" for r, p in zip(rows, t)]
        # attempt 0: all groups equal (wrong, wrong); later: slot 0 informative, the rest equal
        pairs = [[w, "x"] if attempt > 0 and i == 0 else ["x", "x"] for i, w in enumerate(right)]
        experience = Experience(roll=_rollout(t.tolist(), [c for p in pairs for c in p], rows=len(t)),
                                windows=jnp.asarray(window[rows]), valid=jnp.asarray(valid)[:, None],
                                stats=jnp.zeros(3))
        return experience
    experience, reward = objective.collect(roll, proxy, jnp.asarray(window), 5, [1, 2])
    assert calls == [0, 1, 2] and float(experience.stats[2]) == 2  # two refills, one slot each
    assert bool(np.all(experience.valid)) and reward.shape == (2, 2)
    assert np.all(reward.max(-1) > reward.min(-1))  # every group of the full batch has signal
    assert float(experience.stats[1]) == 1.0  # the first rollout had only equal groups
    calls.clear()
    experience, reward = objective.collect(roll, proxy, jnp.asarray(window), 4, [1, 2])  # before step 5
    assert calls == [0] and bool(np.all(experience.valid)) and float(experience.stats[2]) == 0


def test_full_step_runs_with_entropy_filtering():
    window = jnp.asarray([TOK.encode("The capital is Paris. The capital is")[:12]] * 2)
    state = _state()
    state, metrics = rpt_step(state, window, RPTConfig(template="{context}", entropy_threshold=0.0, lookahead=2))
    assert int(state.step) == 1
    assert float(metrics["kept_positions"]) == 1.0  # a random model's entropy exceeds 0
    assert float(metrics["eligible_positions"]) == 1.0
    assert 0.0 <= float(metrics["reward_mean"]) <= 1.0
    assert 0 < float(metrics["completion_len"]) <= RCFG.thought_len
    _, metrics = rpt_step(state, window, RPTConfig(template="{context}", entropy_threshold=99.0))
    assert float(metrics["kept_positions"]) == 0.0 and float(metrics["completion_len"]) == 0.0
