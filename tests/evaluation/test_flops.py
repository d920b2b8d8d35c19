"""FLOP accounting: exact for a hand-computed case, and RLP counts its rollouts."""

from rlp_jax.evaluation.flops import forward_flops, matmul_params, ntp_step_flops, paper_tokens, rlp_step_flops
from rlp_jax.model.config import ModelConfig

CFG = ModelConfig(vocab_size=100, d_model=8, n_layers=2, n_heads=2, n_kv_heads=1, head_dim=4, mlp_dim=16)


def test_matmul_params_by_hand():
    attn = 8 * 4 * (2 * 2 + 2 * 1)  # q, o: 8x(2x4); k, v: 8x(1x4)
    mlp = 3 * 8 * 16
    assert matmul_params(CFG) == 2 * (attn + mlp) + 100 * 8


def test_forward_and_ntp():
    per_token = 2 * matmul_params(CFG) + 4 * 2 * 2 * 4 * 10
    assert forward_flops(CFG, 3, 10) == 3 * per_token
    assert ntp_step_flops(CFG, 2, 20) == 3 * forward_flops(CFG, 40, 10)


def test_rlp_counts_rollout_tokens():
    small = rlp_step_flops(CFG, batch=2, seq_len=64, positions=4, group_size=4, thought_len=8)
    long = rlp_step_flops(CFG, batch=2, seq_len=64, positions=4, group_size=4, thought_len=32)
    assert small["total"] == sum(v for k, v in small.items() if k != "total")
    assert small["ema_pass"] == small["prefill"] == long["prefill"]
    assert long["decode"] > 3.5 * small["decode"]
    assert small["total"] > ntp_step_flops(CFG, 2, 64)


def test_paper_token_formula_by_hand():
    """App. 11: n·l_seq·batch·steps + T_inp, with n = G, batch = B·K, l_seq = T + markers + L."""
    tokens = paper_tokens(batch=2, seq_len=64, positions=4, group_size=4, thought_len=8, steps=10)
    assert tokens == 4 * (64 + 2 + 8) * (2 * 4) * 10 + 2 * 64 * 10 == 24960


def test_kl_reference_pass_and_window_prefills_are_counted():
    shape = dict(batch=2, seq_len=64, positions=4, group_size=4, thought_len=8)
    base = rlp_step_flops(CFG, **shape)
    kl = rlp_step_flops(CFG, **shape, kl_reference=True)
    window = forward_flops(CFG, 2 * 64, 32)
    branches = forward_flops(CFG, 2 * 4 * 4 * (8 + 2), 32 + 4)
    assert kl["kl_reference"] == window + branches and "kl_reference" not in base
    assert kl["total"] == base["total"] + window + branches
    split = rlp_step_flops(CFG, **shape, window_passes=4)  # 4 microbatches: the window prefilled 4 times
    assert split["update"] - base["update"] == 3 * 3 * window
