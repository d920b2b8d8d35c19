"""The compiled train step with the RLP objective: exact EMA schedule with lazy init,
metrics, multi-update batching."""

import jax
import jax.numpy as jnp
import numpy as np

from rlp_jax.model import transformer as model
from rlp_jax.model.config import ModelConfig
from rlp_jax.objectives.config import RLPConfig
from rlp_jax.objectives.rlp import RLP
from rlp_jax.rollout.config import RolloutConfig
from rlp_jax.train.optimizer import OptimizerConfig
from rlp_jax.train.state import init_state
from rlp_jax.train.step import make_train_step

CFG = ModelConfig(vocab_size=16, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, mlp_dim=64)
RCFG = RolloutConfig(group_size=2, positions_per_window=2, thought_len=4, temperature=1.0, open_ids=(1,),
                     close_ids=(2,), min_context=3)
EMA_DECAY = 0.8
OCFG = OptimizerConfig(learning_rate=1e-2, schedule="cosine", warmup_steps=1, decay_steps=10)


def _compiled(state, rollout=RCFG, loss=RLPConfig(), ocfg=OCFG):
    return make_train_step(RLP(CFG, rollout, loss), ocfg, EMA_DECAY, state)[0]


def _copy(tree):
    return jax.tree.map(lambda a: np.array(a), tree)


def test_ema_schedule_is_exact_over_three_steps_with_lazy_init():
    params = model.init_params(CFG, jax.random.key(0))
    state = init_state(params, OCFG, jax.random.key(1))
    state = state.replace(ema_params=jax.tree.map(lambda p: p + 5.0, params))  # must be ignored
    window = jax.random.randint(jax.random.key(2), (2, 10), 3, CFG.vocab_size)
    thetas, emas = [_copy(state.params)], []
    step = _compiled(state)
    for _ in range(3):
        state, metrics = step(state, window)
        thetas.append(_copy(state.params))
        emas.append(_copy(state.ema_params))
    assert int(state.step) == 3
    tau = EMA_DECAY
    expected = thetas[0]  # lazy init φ ← θ_0
    for k in range(3):
        expected = jax.tree.map(lambda e, p: tau * e + (1 - tau) * p, expected, thetas[k + 1])
        for a, b in zip(jax.tree.leaves(emas[k]), jax.tree.leaves(expected)):
            np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    moved = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(thetas[1]), jax.tree.leaves(thetas[3])))
    assert moved > 1e-3  # after the warmup step (lr 0) the params move, so the EMA test has teeth
    for name in ("reward_mean", "reward_std", "s_pred", "s_ema", "thought_len", "clip_frac", "approx_kl",
                 "entropy", "grad_norm", "equal_reward_groups", "loss"):
        assert np.isfinite(float(metrics[name])), name
    assert 0 < float(metrics["thought_len"]) <= RCFG.thought_len
    assert float(metrics["entropy"]) > 0 and float(metrics["grad_norm"]) > 0
    np.testing.assert_allclose(float(metrics["reward_mean"]), float(metrics["s_pred"] - metrics["s_ema"]),
                               atol=1e-5)


def test_several_updates_per_rollout_move_off_policy():
    """With 2 updates × 2 minibatches the later updates see ratios ≠ 1 (approx KL > 0)."""
    rollout = RCFG.replace(position_strategy="entropy")
    loss = RLPConfig(updates_per_rollout=2, minibatches=2, advantage="grpo")
    params = model.init_params(CFG, jax.random.key(0))
    state = init_state(params, OptimizerConfig(learning_rate=3e-2), jax.random.key(1))
    window = jax.random.randint(jax.random.key(2), (2, 10), 3, CFG.vocab_size)
    _, metrics = _compiled(state, rollout, loss, OptimizerConfig(learning_rate=3e-2))(state, window)
    assert float(metrics["approx_kl"]) > 1e-6
    assert np.isfinite(float(metrics["loss"]))


def _leaves_close(a, b, atol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x, np.float32), np.asarray(y, np.float32), atol=atol, rtol=0)


def test_gradient_accumulation_is_one_step_equal_to_the_full_batch():
    """Two microbatches → ONE optimizer step and ONE EMA step, equal to the unsplit step."""
    params = _copy(model.init_params(CFG, jax.random.key(0)))
    window = jax.random.randint(jax.random.key(2), (2, 10), 3, CFG.vocab_size)
    ocfg = OptimizerConfig(learning_rate=1e-3)  # Adam divides by |g|: keep rounding of tiny g below 1e-6
    out = {}
    for accumulation in (1, 2):
        state = init_state(jax.tree.map(jnp.asarray, params), ocfg, jax.random.key(1))
        out[accumulation] = _compiled(state, loss=RLPConfig(grad_accumulation=accumulation), ocfg=ocfg)(state, window)
    (full, m_full), (acc, m_acc) = out[1], out[2]
    assert int(jax.tree.leaves(acc.opt_state)[0]) == 1  # Adam's count: one optimizer step per rollout
    _leaves_close(acc.params, full.params, 1e-6)
    _leaves_close(acc.ema_params, full.ema_params, 1e-6)
    assert max(float(np.abs(np.asarray(a) - np.asarray(b)).max()) for a, b in
               zip(jax.tree.leaves(full.params), jax.tree.leaves(params))) > 5e-4
    for name in ("loss", "grad_norm", "clip_frac", "approx_kl", "entropy", "logp_mismatch", "thought_tokens",
                 "reward_mean"):
        np.testing.assert_allclose(float(m_acc[name]), float(m_full[name]), atol=1e-6, rtol=0, err_msg=name)


def test_one_update_per_rollout_is_exactly_on_policy_in_bf16():
    """The old log-probs are the teacher-forced ones: ρ = 1 exactly; the decode drift is reported."""
    cfg = CFG.replace(dtype="bfloat16")
    params = model.init_params(cfg, jax.random.key(0))
    state = init_state(params, OCFG, jax.random.key(1))
    window = jax.random.randint(jax.random.key(2), (2, 10), 3, CFG.vocab_size)
    step = make_train_step(RLP(cfg, RCFG, RLPConfig()), OCFG, EMA_DECAY, state)[0]
    _, metrics = step(state, window)
    assert float(metrics["clip_frac"]) == 0.0 and float(metrics["approx_kl"]) == 0.0
    mismatch = float(metrics["logp_mismatch"])
    assert 0.0 < mismatch < 0.5  # bf16 decode vs teacher-forced pass: close, not equal


def test_kl_reference_stays_the_initial_params_and_is_checkpointed(tmp_path):
    from rlp_jax.train import checkpoint
    from rlp_jax.train.state import reference_params

    theta0 = _copy(model.init_params(CFG, jax.random.key(0)))
    state = init_state(jax.tree.map(jnp.asarray, theta0), OCFG, jax.random.key(1), reference=True)
    assert init_state(theta0, OCFG, jax.random.key(1)).ref_params is None  # no KL: no extra copy
    step = _compiled(state, loss=RLPConfig(kl_beta=0.5))
    window = jax.random.randint(jax.random.key(2), (2, 10), 3, CFG.vocab_size)
    kls = []
    for _ in range(4):
        state, metrics = step(state, window)
        kls.append(float(metrics["kl_ref"]))
    for a, b in zip(jax.tree.leaves(state.ref_params), jax.tree.leaves(theta0)):
        np.testing.assert_array_equal(np.asarray(a), b)  # θ_0, bit for bit, after 4 steps
    assert reference_params(state) is state.ref_params
    ema_moved = max(float(np.abs(np.asarray(a) - b).max()) for a, b in
                    zip(jax.tree.leaves(state.ema_params), jax.tree.leaves(theta0)))
    assert ema_moved > 1e-4  # the EMA did move: it would have been a different reference
    assert kls[0] < 1e-6 < kls[-1]  # step 0: θ = θ_0, so the KL to the reference is 0
    manager = checkpoint.make_manager(str(tmp_path), async_save=False)
    checkpoint.save(manager, 4, state, force=True)
    manager.wait_until_finished()
    like = jax.eval_shape(lambda: state)
    restored, _ = checkpoint.restore(manager, like, jax.tree.map(lambda a: a.sharding, state))
    for a, b in zip(jax.tree.leaves(restored.ref_params), jax.tree.leaves(theta0)):
        np.testing.assert_array_equal(np.asarray(a), b)
