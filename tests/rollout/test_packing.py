"""Packed windows: every document of a window is seen alone.

Reference equality: a window that packs documents A and B (then padding) gives, at every
position of A and of B, the same no-think scores, thought rollouts, teacher-forced branch
scores and so the same RLP rewards as a window holding that document alone. And no
thinking position is ever chosen at padding, at a document's first token, or with less
than `min_context` tokens of its own document before it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlp_jax.model import transformer as model
from rlp_jax.model.config import ModelConfig
from rlp_jax.objectives.ntp import ntp_loss
from rlp_jax.objectives.rlp import RLP
from rlp_jax.rollout import branches as br
from rlp_jax.rollout.config import RolloutConfig
from rlp_jax.rollout.no_think import no_think_scores
from rlp_jax.rollout.positions import choose_positions_ok, eligible
from rlp_jax.rollout.thoughts import rollout_thoughts_jit
from rlp_jax.rollout.window import Window, as_window

CFG = ModelConfig(vocab_size=17, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, mlp_dim=64)
RCFG = RolloutConfig(group_size=4, positions_per_window=1, thought_len=5, temperature=1.0, open_ids=(1,),
                     close_ids=(2, 3), min_context=2)
A = [5, 9, 7, 11, 6, 8, 14]
B = [4, 12, 10, 13, 15, 9, 5, 16, 7]
PAD = 3
T = len(A) + len(B) + PAD


def _packed() -> Window:
    tokens = np.asarray([A + B + [0] * PAD], np.int32)
    segments = np.asarray([[1] * len(A) + [2] * len(B) + [0] * PAD], np.int32)
    positions = np.asarray([list(range(len(A))) + list(range(len(B))) + [0] * PAD], np.int32)
    return Window(jnp.asarray(tokens), jnp.asarray(segments), jnp.asarray(positions))


def _alone(doc) -> jax.Array:
    return jnp.asarray([doc], jnp.int32)


@pytest.fixture(scope="module")
def params():
    return model.init_params(CFG, jax.random.key(0))


def _cases():
    """(slot in the packed window, the document alone, the slot there)."""
    return ([(t, A, t) for t in range(2, len(A))] + [(len(A) + t, B, t) for t in range(2, len(B))])


def test_no_think_scores_equal_each_document_alone(params):
    packed_score, packed_entropy = map(np.asarray, no_think_scores(params, CFG, _packed()))
    for slot, doc, t in _cases():
        score, entropy = map(np.asarray, no_think_scores(params, CFG, _alone(doc)))
        np.testing.assert_allclose(packed_score[0, slot], score[0, t], atol=1e-5)
        np.testing.assert_allclose(packed_entropy[0, slot], entropy[0, t], atol=1e-5)
    # nothing is predicted across the boundary or at padding
    assert np.all(packed_score[0, [0, len(A)] + list(range(len(A) + len(B), T))] == 0)


def test_rollouts_and_rewards_equal_each_document_alone(params):
    """Same key, same branch layout: the same thoughts, S_pred and reward r = S_pred − S_ema."""
    packed = _packed()
    packed_s_ema = no_think_scores(params, CFG, packed)[0]
    key = jax.random.key(4)
    for slot, doc, t in _cases():
        roll = rollout_thoughts_jit(params, CFG, RCFG, packed, jnp.asarray([[slot]]), key)
        ref = rollout_thoughts_jit(params, CFG, RCFG, _alone(doc), jnp.asarray([[t]]), key)
        np.testing.assert_array_equal(roll.thoughts, ref.thoughts)
        np.testing.assert_array_equal(roll.lengths, ref.lengths)
        np.testing.assert_allclose(roll.s_pred, ref.s_pred, atol=1e-5)
        np.testing.assert_allclose(roll.logp, ref.logp, atol=1e-5)
        reward = roll.s_pred - br.at_branches(packed_s_ema, roll.t)
        ref_reward = ref.s_pred - br.at_branches(no_think_scores(params, CFG, _alone(doc))[0], ref.t)
        np.testing.assert_allclose(reward, ref_reward, atol=1e-5)


def test_gradient_pass_scores_equal_each_document_alone(params):
    packed = _packed()
    thoughts = jax.random.randint(jax.random.key(2), (1, RCFG.group_size, RCFG.thought_len), 4, CFG.vocab_size)
    lengths = jnp.asarray([[1, 3, 5, 2]])
    for slot, doc, t in _cases():
        got = br.score_branches(params, CFG, RCFG, packed, jnp.full((1, RCFG.group_size), slot), thoughts, lengths)
        ref = br.score_branches(params, CFG, RCFG, _alone(doc), jnp.full((1, RCFG.group_size), t), thoughts, lengths)
        np.testing.assert_allclose(got.s_pred, ref.s_pred, atol=1e-5)
        np.testing.assert_allclose(got.thought_logp, ref.thought_logp, atol=1e-5)


def test_ntp_loss_counts_only_targets_inside_a_document(params):
    """The packed window's mean NLL is the token-weighted mean of the documents' own."""
    packed = float(ntp_loss(params, CFG, _packed()))
    a, b = (float(ntp_loss(params, CFG, _alone(doc))) for doc in (A, B))
    weighted = (a * (len(A) - 1) + b * (len(B) - 1)) / (len(A) + len(B) - 2)
    np.testing.assert_allclose(packed, weighted, rtol=1e-5)


def test_no_position_is_ever_chosen_at_padding_or_without_context():
    packed = _packed()
    allowed = np.asarray(eligible(packed, RCFG.min_context))[0]
    expected = np.zeros(T, bool)
    expected[2:len(A)] = True
    expected[len(A) + 2:len(A) + len(B)] = True
    np.testing.assert_array_equal(allowed, expected)
    rcfg = RCFG.replace(positions_per_window=4)
    entropy = jax.random.uniform(jax.random.key(9), (1, T)) * 5.0
    for strategy in ("uniform", "entropy"):
        for seed in range(50):
            t, ok = map(np.asarray, choose_positions_ok(jax.random.key(seed), entropy,
                                                         rcfg.replace(position_strategy=strategy), packed))
            assert ok.all() and expected[t[0]].all(), (strategy, seed, t)
    # a window with fewer eligible positions than K marks the rest not ok
    short = Window(packed.tokens, packed.segment_ids.at[:, len(A):].set(0), packed.positions)
    t, ok = map(np.asarray, choose_positions_ok(jax.random.key(0), entropy,
                                                 RCFG.replace(positions_per_window=8), short))
    assert ok.sum() == len(A) - 2 and expected[t[ok]].all()


def test_rlp_rolls_out_nothing_and_learns_nothing_at_positions_that_are_not_ok(params):
    """A row of padding: its groups decode nothing and carry no advantage or metric weight."""
    packed = _packed()
    empty = Window(jnp.zeros_like(packed.tokens), jnp.zeros_like(packed.segment_ids), packed.positions)
    both = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), packed, empty)
    objective = RLP(CFG, RCFG.replace(positions_per_window=2, position_strategy="entropy"))
    experience = objective.rollout(params, params, both, jax.random.key(1))
    assert np.asarray(experience.valid[0]).all() and not np.asarray(experience.valid[1]).any()
    assert np.asarray(experience.roll.lengths[1]).max() == 0
    batch, metrics = objective.loss_batch(experience, objective.reward(experience, both), both, None)
    assert np.all(np.asarray(batch.advantages[1]) == 0)
    only = jax.tree.map(lambda a: a[:1], packed)
    experience_one = objective.rollout(params, params, only, jax.random.key(1))
    np.testing.assert_allclose(metrics["s_ema"], jnp.mean(experience_one.s_ema), atol=1e-5)


def test_a_plain_token_array_is_one_document_per_row():
    tokens = jnp.asarray([[4, 5, 6, 0]])
    w = as_window(tokens)
    np.testing.assert_array_equal(w.segment_ids, [[1, 1, 1, 1]])
    np.testing.assert_array_equal(w.positions, [[0, 1, 2, 3]])
