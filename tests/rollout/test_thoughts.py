"""Prefix-shared thought rollouts and the gradient pass equal the re-encoding reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlp_jax.rollout import branches as br
from rlp_jax.model import transformer as model
from rlp_jax.objectives import policy_loss as objective
from rlp_jax.model.config import ModelConfig
from rlp_jax.rollout.reference import reference_rollout_jit, reference_score_branches
from rlp_jax.objectives.config import RLPConfig
from rlp_jax.rollout.config import RolloutConfig
from rlp_jax.rollout.thoughts import rollout_thoughts_jit

CFG = ModelConfig(vocab_size=13, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8,
                  mlp_dim=64, qk_norm=True)
RCFG = RolloutConfig(group_size=3, positions_per_window=2, thought_len=6, temperature=1.0, top_k=10,
                     top_p=0.95, open_ids=(1,), close_ids=(2, 3), min_context=2)
T = 12


@pytest.fixture(scope="module")
def setup():
    params = model.init_params(CFG, jax.random.key(0))
    window = jax.random.randint(jax.random.key(1), (2, T), 4, CFG.vocab_size)
    t = jnp.array([[3, 9], [5, 11]])
    roll = rollout_thoughts_jit(params, CFG, RCFG, window, t, jax.random.key(5))
    return params, window, t, roll


def test_rollout_matches_reencoding_reference(setup):
    params, window, t, roll = setup
    ref = reference_rollout_jit(params, CFG, RCFG, window, t, jax.random.key(5))
    np.testing.assert_array_equal(roll.thoughts, ref.thoughts)
    np.testing.assert_array_equal(roll.lengths, ref.lengths)
    lengths = np.asarray(roll.lengths)
    assert lengths.min() < RCFG.thought_len, "the test needs at least one early stop"
    assert lengths.max() == RCFG.thought_len
    np.testing.assert_array_equal(np.asarray(roll.t), np.repeat(np.asarray(t), 3, axis=1))
    np.testing.assert_allclose(roll.logp, ref.logp, atol=1e-5, rtol=0)
    np.testing.assert_allclose(roll.s_pred, ref.s_pred, atol=1e-5, rtol=0)
    # tokens past a branch's end are 0 and carry no log-prob
    past = np.arange(RCFG.thought_len) >= lengths[..., None]
    assert np.all(np.asarray(roll.thoughts)[past] == 0) and np.all(np.asarray(roll.logp)[past] == 0)
    assert not np.any(np.asarray(roll.thoughts)[~past] == RCFG.close_ids[0])


def test_fixed_key_is_deterministic(setup):
    params, window, t, roll = setup
    again = rollout_thoughts_jit(params, CFG, RCFG, window, t, jax.random.key(5))
    np.testing.assert_array_equal(again.thoughts, roll.thoughts)
    other = rollout_thoughts_jit(params, CFG, RCFG, window, t, jax.random.key(6))
    assert np.any(np.asarray(other.thoughts) != np.asarray(roll.thoughts))


def test_decode_log_probs_match_full_forwards(setup):
    """The decode loop's log-probs and S_pred equal full forwards over each branch."""
    params, window, _, roll = setup
    ref = reference_score_branches(params, CFG, RCFG, window, roll.t, roll.thoughts, roll.lengths)
    np.testing.assert_allclose(roll.logp, ref.thought_logp, atol=1e-5, rtol=0)
    np.testing.assert_allclose(roll.s_pred, ref.s_pred, atol=1e-5, rtol=0)


def test_near_greedy_decode_matches_step_by_step_argmax(setup):
    params, window, t, _ = setup
    rcfg = RCFG.replace(temperature=1e-4, top_k=0, top_p=1.0, close_ids=(0,), thought_len=4)
    roll = rollout_thoughts_jit(params, CFG, rcfg, window, t, jax.random.key(0))
    for b in range(2):
        for r in range(roll.t.shape[1]):
            cut = int(roll.t[b, r])
            seq = list(np.asarray(window[b, :cut])) + [1]
            for u in range(int(roll.lengths[b, r])):
                padded = jnp.asarray(seq + [0] * (T + 8 - len(seq)))[None]
                nxt = int(jnp.argmax(model.forward_compiled(params, CFG, padded)[0, len(seq) - 1]))
                assert nxt == int(roll.thoughts[b, r, u])
                seq.append(nxt)


@pytest.mark.parametrize("head_chunk", [0, 5])  # 0: one piece; 5: 72 thought rows in 15 chunks, padded
def test_gradient_pass_scores_loss_and_grads_match_reference(setup, head_chunk):
    params, window, _, roll = setup
    cfg = CFG.replace(head_chunk=head_chunk)
    fast = jax.jit(br.score_branches, static_argnames=("cfg", "rcfg"))(
        params, cfg, RCFG, window, roll.t, roll.thoughts, roll.lengths)
    ref = reference_score_branches(params, CFG, RCFG, window, roll.t, roll.thoughts, roll.lengths)
    for name in ("thought_logp", "entropy", "s_pred"):
        np.testing.assert_allclose(getattr(fast, name), getattr(ref, name), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(fast.thought_mask, ref.thought_mask)

    rewards = jax.random.normal(jax.random.key(2), roll.s_pred.shape)
    batch = objective.LossBatch(window=window, t=roll.t, thoughts=roll.thoughts, lengths=roll.lengths,
                                logp_old=roll.logp - 0.15 * jax.random.normal(jax.random.key(3), roll.logp.shape),
                                advantages=objective.advantages(rewards, RCFG.group_size, "rlp"))
    loss = RLPConfig(ntp_coef=0.3)
    grad_fast = jax.jit(jax.grad(objective.policy_loss, has_aux=True), static_argnames=("cfg", "rollout", "lcfg", "ntp_coef"))
    g_fast, m_fast = grad_fast(params, cfg, RCFG, loss, batch, ntp_coef=loss.ntp_coef)
    g_ref, m_ref = jax.grad(objective.policy_loss, has_aux=True)(
        params, CFG, RCFG, loss, batch, ntp_coef=loss.ntp_coef, score_fn=reference_score_branches)
    assert abs(float(m_fast["loss"]) - float(m_ref["loss"])) <= 1e-5
    assert float(m_fast["clip_frac"]) > 0  # the perturbed logp_old exercises the clip
    for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(g_fast)) > 1e-3


def test_no_empty_thought_even_when_the_close_token_dominates():
    """|c| >= 1: the close token is banned at the first slot (it would win ~always otherwise);
    the gradient pass and the reference score that slot under the same ban, so ρ = 1."""
    close = RCFG.close_ids[0]
    params = model.init_params(CFG, jax.random.key(0))
    inner = params["params"]
    embed = inner["embed"]["embedding"].at[:, 0].set(100.0).at[close, 0].set(1000.0)
    scale = jnp.zeros_like(inner["final_norm"]["scale"]).at[0].set(1.0)
    params = {"params": {**inner, "embed": {"embedding": embed}, "final_norm": {"scale": scale}}}
    window = jax.random.randint(jax.random.key(1), (2, T), 4, CFG.vocab_size)
    t = jnp.array([[3, 9], [5, 11]])
    roll = rollout_thoughts_jit(params, CFG, RCFG, window, t, jax.random.key(5))
    np.testing.assert_array_equal(roll.lengths, 1)  # the close token wins at every later step
    assert np.all(np.asarray(roll.thoughts[..., 0]) != close)
    assert np.all(np.isfinite(np.asarray(roll.logp))) and float(roll.logp[..., 0].max()) <= 0.0
    fast = jax.jit(br.score_branches, static_argnames=("cfg", "rcfg"))(
        params, CFG, RCFG, window, roll.t, roll.thoughts, roll.lengths)
    ref = reference_score_branches(params, CFG, RCFG, window, roll.t, roll.thoughts, roll.lengths)
    np.testing.assert_allclose(fast.thought_logp, roll.logp, atol=1e-5, rtol=0)
    np.testing.assert_allclose(ref.thought_logp, roll.logp, atol=1e-5, rtol=0)
    ref_roll = reference_rollout_jit(params, CFG, RCFG, window, t, jax.random.key(5))
    np.testing.assert_array_equal(ref_roll.thoughts, roll.thoughts)
