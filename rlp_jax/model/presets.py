"""Named architectures: the shapes of the models users train, without their weights.

A config names one with `architecture:` to train from a random init at that shape, and
`rlp-jax compile` falls back to it when `init_from`'s directory is not on this machine
(compiling for a pod needs shapes, never weights). Each entry is the model's own
`config.json` written as a `ModelConfig`.
"""

from __future__ import annotations

from rlp_jax.errors import UserError
from rlp_jax.model.config import ModelConfig

ARCHITECTURES = {
    "tiny": ModelConfig(vocab_size=256, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16,
                        mlp_dim=128, max_seq_len=4096),
    # HuggingFaceTB/SmolLM2-135M: 30 layers, d 576, 9 query / 3 KV heads of 64, MLP 1536, tied.
    "smollm2-135m": ModelConfig(family="llama", vocab_size=49152, d_model=576, n_layers=30, n_heads=9,
                                n_kv_heads=3, head_dim=64, mlp_dim=1536, rope_theta=100000.0, rms_eps=1e-5,
                                tie_embeddings=True, max_seq_len=8192),
    # Qwen/Qwen3-1.7B-Base: 28 layers, d 2048, 16 query / 8 KV heads of 128, MLP 6144, tied, QK-norm.
    "qwen3-1.7b": ModelConfig(family="qwen3", vocab_size=151936, d_model=2048, n_layers=28, n_heads=16,
                              n_kv_heads=8, head_dim=128, mlp_dim=6144, rope_theta=1e6, rms_eps=1e-6,
                              tie_embeddings=True, qk_norm=True, max_seq_len=40960, dtype="bfloat16",
                              param_dtype="bfloat16"),
    # Qwen/Qwen3-8B-Base: 36 layers, d 4096, 32 query / 8 KV heads of 128, MLP 12288, untied.
    "qwen3-8b": ModelConfig(family="qwen3", vocab_size=151936, d_model=4096, n_layers=36, n_heads=32,
                            n_kv_heads=8, head_dim=128, mlp_dim=12288, rope_theta=1e6, rms_eps=1e-6,
                            tie_embeddings=False, qk_norm=True, max_seq_len=40960, dtype="bfloat16",
                            param_dtype="bfloat16"),
}


def architecture(name: str) -> ModelConfig:
    """The named architecture; an unknown name is a one-line UserError listing the known ones."""
    if name not in ARCHITECTURES:
        raise UserError(f"unknown architecture {name!r} (known: {', '.join(ARCHITECTURES)})")
    return ARCHITECTURES[name]
