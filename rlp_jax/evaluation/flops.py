"""Model-FLOP accounting (matmul FLOPs, the convention of MFU figures), and decode memory traffic.

A forward pass over one token costs 2·(matmul params) plus attention 4·layers·heads·
head_dim·(keys it reads). A backward pass costs twice the forward. RLP steps count
their rollouts too (docs/algorithms.md): the EMA pass, the window prefill, every decoded thought
token, the teacher-forced close marker, the gradient pass over window + branches, and the
KL reference pass when there is one. `paper_tokens` is the paper's own token count beside it.
"""

from __future__ import annotations

from rlp_jax.model.config import ModelConfig


def matmul_params(cfg: ModelConfig) -> int:
    """Parameters that take part in matmuls per token (embedding lookup excluded, head included)."""
    attn = cfg.d_model * cfg.head_dim * (2 * cfg.n_heads + 2 * cfg.n_kv_heads)
    mlp = 3 * cfg.d_model * cfg.mlp_dim
    return cfg.n_layers * (attn + mlp) + cfg.vocab_size * cfg.d_model


def forward_flops(cfg: ModelConfig, tokens: float, keys_per_token: float) -> float:
    """Forward FLOPs of `tokens` tokens that each attend to `keys_per_token` keys on average."""
    attention = 4 * cfg.n_layers * cfg.n_heads * cfg.head_dim * keys_per_token
    return tokens * (2 * matmul_params(cfg) + attention)


def ntp_step_flops(cfg: ModelConfig, batch: int, seq_len: int) -> float:
    """Forward + backward of next-token training on `batch` windows of `seq_len` tokens."""
    return 3 * forward_flops(cfg, batch * seq_len, seq_len / 2)


def rlp_step_flops(cfg: ModelConfig, batch: int, seq_len: int, positions: int, group_size: int,
                   thought_len: int, marker_len: int = 2, updates: int = 1, window_passes: int = 1,
                   kl_reference: bool = False) -> dict[str, float]:
    """FLOPs of one RLP step by phase (thoughts assumed full length: an upper bound).

    `updates`: passes over the rollout (updates_per_rollout); `window_passes`: window
    prefills per pass (minibatches × grad_accumulation: each gradient pass re-prefills the
    window for its part of the branches); `kl_reference`: kl_beta > 0 scores the branches
    with the reference (one forward over window + branches).
    """
    window_tokens = batch * seq_len
    branches = batch * positions * group_size
    branch_tokens = branches * (thought_len + marker_len)
    context = seq_len / 2  # a thinking position is uniform in the window on average
    phases = {
        "ema_pass": forward_flops(cfg, window_tokens, seq_len / 2),
        "prefill": forward_flops(cfg, window_tokens, seq_len / 2),
        "decode": forward_flops(cfg, branch_tokens, context + thought_len / 2),
        "update": updates * 3 * (window_passes * forward_flops(cfg, window_tokens, seq_len / 2)
                                 + forward_flops(cfg, branch_tokens, context + thought_len / 2)),
    }
    if kl_reference:
        phases["kl_reference"] = (forward_flops(cfg, window_tokens, seq_len / 2)
                                  + forward_flops(cfg, branch_tokens, context + thought_len / 2))
    phases["total"] = sum(phases.values())
    return phases


def paper_tokens(batch: int, seq_len: int, positions: int, group_size: int, thought_len: int, steps: int = 1,
                 marker_len: int = 2) -> float:
    """The RLP paper's compute measure (App. 11), tokens processed with the rollouts:
    T_flop ≈ n · l_seq · batch · steps + T_inp, with n = G rollouts per prompt, batch = B·K
    prompts (thinking positions) per step, l_seq = context + markers + thought (the full
    window as context, thoughts at full length: an upper bound) and T_inp = B·T·steps the
    input tokens read. Multiply by 6·params for the usual FLOP estimate."""
    rollouts = group_size * (seq_len + marker_len + thought_len) * batch * positions * steps
    return float(rollouts + batch * seq_len * steps)


def decode_bytes_per_step(cfg: ModelConfig, batch: int, window: int, branches: int, branch_len: int) -> float:
    """Bytes one rollout decode step must read from memory: every parameter once (the tied
    head reads the whole embedding) plus the keys/values it attends to — the window prefix
    of each row and each branch's own cache. Decode is bound by this, not by FLOPs."""
    param_bytes = cfg.param_count() * _itemsize(cfg.param_dtype)
    kv_per_token = cfg.n_layers * 2 * cfg.n_kv_heads * cfg.head_dim * _itemsize(cfg.dtype)
    return param_bytes + kv_per_token * batch * (window + branches * branch_len)


def _itemsize(dtype: str) -> int:
    return {"float32": 4, "bfloat16": 2, "float16": 2}[dtype]
