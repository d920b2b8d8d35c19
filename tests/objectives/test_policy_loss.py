"""RLP math: advantages, clipping, no NTP gradient path, Proposition 1, position choice."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlp_jax.model import transformer as model
from rlp_jax.model.config import ModelConfig
from rlp_jax.objectives import policy_loss as objective
from rlp_jax.objectives.config import RLPConfig
from rlp_jax.objectives.rlp import information_gain
from rlp_jax.rollout import branches as br
from rlp_jax.rollout.config import RolloutConfig
from rlp_jax.rollout.no_think import no_think_scores
from rlp_jax.rollout.positions import choose_positions

CFG = ModelConfig(vocab_size=11, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, mlp_dim=64)
RCFG = RolloutConfig(group_size=2, positions_per_window=1, thought_len=3, temperature=0.7, open_ids=(1,),
                     close_ids=(2,), min_context=2)


def test_advantage_formulas():
    r = jnp.array([[1.0, 2.0, 4.0, 5.0, 0.0, 0.0, 0.0, 3.0]])
    a = objective.advantages(r, 4, RLPConfig().advantage)
    np.testing.assert_allclose(a, [[4 / 3 * -2, 4 / 3 * -1, 4 / 3 * 1, 4 / 3 * 2,
                                    -1.0, -1.0, -1.0, 3.0]], atol=1e-6)
    g = objective.advantages(r, 4, "grpo")
    np.testing.assert_allclose(g[0, :4], np.array([-2, -1, 1, 2]) / np.sqrt(2.5), atol=1e-5)
    np.testing.assert_allclose(g[0, 4:], np.array([-1, -1, -1, 3]) / np.sqrt(3.0), atol=1e-5)
    assert float(objective.equal_reward_groups(jnp.array([[1.0, 1.0, 2.0, 3.0]]), 2)) == 0.5
    b = objective.advantages(r, 4, "grpo", std="bessel")  # verl: torch.std, divided by G − 1
    np.testing.assert_allclose(b[0, :4], np.array([-2, -1, 1, 2]) / np.sqrt(10 / 3), atol=1e-5)


def test_loss_aggregation_per_sequence_or_per_token_and_invalid_branches():
    logp = jnp.zeros((1, 2, 3))
    adv = jnp.array([[1.0, 3.0]])
    mask = jnp.array([[[True, False, False], [True, True, True]]])  # lengths 1 and 3
    seq, _ = objective.clipped_surrogate(logp, logp, adv, mask, 0.2, 0.2)
    tok, _ = objective.clipped_surrogate(logp, logp, adv, mask, 0.2, 0.2, aggregation="token")
    assert float(seq) == -(1.0 + 3.0) / 2 and float(tok) == -(1.0 + 3 * 3.0) / 4
    valid = jnp.array([[True, False]])
    for aggregation in ("sequence", "token"):
        loss, _ = objective.clipped_surrogate(logp, logp, adv, mask, 0.2, 0.2, valid, aggregation)
        assert float(loss) == -1.0  # the invalid branch is in neither sum nor count


def test_clipping_zeroes_gradient_outside_the_trust_region():
    eps_low, eps_high = 0.2, 0.3
    # ratios 1.5 (A>0: clipped), 0.5 (A<0: clipped), 1.5 (A<0: not clipped), 1.1 (inside), 0.5 (A>0)
    ratio = jnp.array([[1.5, 0.5, 1.5, 1.1, 0.5]])
    adv = jnp.array([2.0])
    logp_old = jnp.zeros((1, 5))
    mask = jnp.ones((1, 5), bool)
    signs = jnp.array([[1.0, -1.0, -1.0, 1.0, 1.0]])

    def loss(logp):
        ratio_adv = adv * signs  # per-token advantage sign via a broadcast trick
        r = jnp.exp(logp - logp_old)
        obj = jnp.minimum(r * ratio_adv, jnp.clip(r, 1 - eps_low, 1 + eps_high) * ratio_adv)
        return -jnp.mean(obj)

    grad = jax.grad(loss)(jnp.log(ratio))
    np.testing.assert_allclose(grad, [[0.0, 0.0, 1.5 * 2 / 5, -1.1 * 2 / 5, -0.5 * 2 / 5]], atol=1e-6)
    # the library function on one branch per sign gives the same zeros
    for sign, r, expect_zero in [(1, 1.5, True), (-1, 0.5, True), (-1, 1.5, False), (1, 0.5, False)]:
        g = jax.grad(lambda lp: objective.clipped_surrogate(
            lp, jnp.zeros((1, 1)), jnp.array([2.0 * sign]), jnp.ones((1, 1), bool), eps_low, eps_high)[0])(
            jnp.log(jnp.array([[r]])))
        assert (float(jnp.abs(g).max()) == 0.0) == expect_zero
        if not expect_zero:
            np.testing.assert_allclose(g, [[-2.0 * sign * r]], rtol=1e-6)
    # token mean per thought, then mean over branches; masked tokens do not count
    loss2, clipped = objective.clipped_surrogate(jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.array([1.0, 3.0]),
                                                 jnp.array([[True, True, False], [True, False, False]]), 0.2, 0.2)
    assert float(loss2) == pytest.approx(-2.0) and not bool(clipped.any())


@pytest.fixture(scope="module")
def tiny():
    params = model.init_params(CFG, jax.random.key(0))
    window = jax.random.randint(jax.random.key(1), (1, 6), 3, CFG.vocab_size)
    thoughts = jnp.array([[[5, 7, 0], [9, 0, 0]]])
    return params, window, thoughts, jnp.array([[2, 1]])


def test_ntp_zero_leaves_no_gradient_path_through_next_token_scores(tiny):
    params, window, thoughts, lengths = tiny
    t = jnp.array([[4, 4]])
    real = br.score_branches(params, CFG, RCFG, window, t, thoughts, lengths)
    batch = objective.LossBatch(window=window, t=t, thoughts=thoughts, lengths=lengths,
                                logp_old=real.thought_logp, advantages=jnp.array([[0.5, -0.5]]))

    def loss_of_s_pred(s_pred, ntp):
        fn = lambda *a: real.replace(s_pred=s_pred)  # noqa: E731
        return objective.policy_loss(params, CFG, RCFG, RLPConfig(), batch, ntp_coef=ntp, score_fn=fn)[0]

    np.testing.assert_array_equal(jax.grad(loss_of_s_pred)(real.s_pred, 0.0), [[0.0, 0.0]])
    np.testing.assert_allclose(jax.grad(loss_of_s_pred)(real.s_pred, 0.4), [[-0.2, -0.2]], atol=1e-7)
    # and the parameter gradient does not depend on the target x_t when NTP = 0
    grad = jax.jit(lambda w, ntp: jax.grad(objective.policy_loss, has_aux=True)(
        params, CFG, RCFG, RLPConfig(), batch.replace(window=w), ntp_coef=ntp)[0], static_argnums=1)
    other = window.at[0, 4].set((window[0, 4] + 1) % CFG.vocab_size)
    for a, b in zip(jax.tree.leaves(grad(window, 0.0)), jax.tree.leaves(grad(other, 0.0))):
        np.testing.assert_array_equal(a, b)
    diff = [float(jnp.abs(a - b).max()) for a, b in
            zip(jax.tree.leaves(grad(window, 1.0)), jax.tree.leaves(grad(other, 1.0)))]
    assert max(diff) > 1e-4


def test_proposition_1_on_an_exact_distribution(tiny):
    """E_{x_t~p*}[r] = CE(p*, p_φ) − CE(p*, p_θ(·|c)), enumerating every x_t of the vocabulary."""
    params, window, thoughts, lengths = tiny
    ema = jax.tree.map(lambda p: p * 1.1, params)
    t = 4
    p_star = jax.nn.softmax(jax.random.normal(jax.random.key(9), (CFG.vocab_size,)) * 2)
    windows = jnp.tile(window, (CFG.vocab_size, 1)).at[:, t].set(jnp.arange(CFG.vocab_size))
    t_branch = jnp.full((CFG.vocab_size, 2), t)
    tiled = lambda a: jnp.tile(a, (CFG.vocab_size,) + (1,) * (a.ndim - 1))  # noqa: E731
    score = jax.jit(br.score_branches, static_argnames=("cfg", "rcfg"))
    s_pred = score(params, CFG, RCFG, windows, t_branch, tiled(thoughts), tiled(lengths)).s_pred
    s_ema_all = jax.jit(no_think_scores, static_argnames=("cfg",))(ema, CFG, windows)[0]
    s_ema = br.at_branches(s_ema_all, t_branch)
    r = information_gain(s_pred, s_ema)  # [V, 2]: reward for each possible x_t, thought
    expected_r = jnp.sum(p_star[:, None] * r, axis=0)
    # the two cross-entropies straight from the models' next-token distributions
    log_phi = jax.nn.log_softmax(model.forward_compiled(ema, CFG, window[:, :t])[0, -1])
    ce_phi = -jnp.sum(p_star * log_phi)
    for g in range(2):
        seq = jnp.concatenate([window[0, :t], jnp.array([1]), thoughts[0, g, : int(lengths[0, g])], jnp.array([2])])
        log_theta = jax.nn.log_softmax(model.forward_compiled(params, CFG, seq[None])[0, -1])
        np.testing.assert_allclose(expected_r[g], ce_phi + jnp.sum(p_star * log_theta), atol=1e-5)


def test_position_strategies():
    entropy = jnp.array([[9.0, 8.0, 0.1, 0.5, 0.3, 0.9, 0.2, 0.4]])
    rc = RolloutConfig(positions_per_window=3, min_context=2, position_strategy="entropy")
    np.testing.assert_array_equal(choose_positions(jax.random.key(0), entropy, rc), [[3, 5, 7]])
    rc = rc.replace(position_strategy="uniform", positions_per_window=4)
    draws = np.stack([np.asarray(choose_positions(jax.random.key(i), jnp.zeros((2, 8)), rc)) for i in range(200)])
    assert draws.min() == 2 and draws.max() == 7
    assert all(len(set(row)) == 4 for row in draws.reshape(-1, 4))
    counts = np.bincount(draws.ravel(), minlength=8)[2:]
    assert counts.min() > 0.8 * counts.mean()  # 6 eligible slots, each chosen 2/3 of the time
