"""The model's architecture as one typed, JSON-serialisable dataclass.

Saved as `model_config.json` beside every checkpoint so that a checkpoint is
self-describing: `rlp-jax score --checkpoint DIR` needs nothing else.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from rlp_jax.errors import UserError, read_json

MODEL_CONFIG_FILE = "model_config.json"
FAMILIES = ("llama", "qwen3")
REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch")


def _hashable(value):
    """`value` with dicts frozen to sorted item tuples and lists to tuples (for rope_scaling)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value

ATTENTIONS = ("einsum", "blockwise")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Decoder-only transformer of the Llama / Qwen3 families."""

    family: str = "llama"
    vocab_size: int = 256
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 2
    head_dim: int = 16
    mlp_dim: int = 128
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None
    rms_eps: float = 1e-5
    tie_embeddings: bool = True
    qk_norm: bool = False
    max_seq_len: int = 2048
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat: str = "none"
    scan_layers: bool = True
    # Losses read log-probs off the vocabulary head this many tokens at a time (the logits
    # of a chunk are recomputed in the backward pass), so [tokens, vocab] never exists at
    # once; 0 = all tokens in one piece.
    head_chunk: int = 1024
    # "einsum": every key block's scores at once (fastest for short sequences); "blockwise":
    # an online softmax over `attention_block`-sized chunks of queries and keys, so the
    # [B, R, Q, H, keys] scores of 2k-token branches over a 2k-token window never exist.
    attention: str = "einsum"
    attention_block: int = 512

    def __post_init__(self):
        self.validate()
        # Configs are static jit arguments, hashed on every dispatch: hash the fields once
        # (configs are values, never mutated; `replace` builds a new one).
        fields = tuple(_hashable(getattr(self, f.name)) for f in dataclasses.fields(self))
        object.__setattr__(self, "_hash", hash(fields))

    def validate(self) -> None:
        def need(cond: bool, message: str) -> None:
            if not cond:
                raise UserError(f"model config: {message}")

        need(self.family in FAMILIES, f"family must be one of {FAMILIES}, got {self.family!r}")
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim",
                     "mlp_dim", "max_seq_len"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) > 0,
                 f"{name} must be a positive integer, got {getattr(self, name)!r}")
        need(self.n_heads % self.n_kv_heads == 0,
             f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")
        need(self.head_dim % 2 == 0, f"head_dim must be even for RoPE, got {self.head_dim}")
        need(isinstance(self.head_chunk, int) and self.head_chunk >= 0,
             f"head_chunk must be an integer >= 0, got {self.head_chunk!r}")
        need(self.attention in ATTENTIONS, f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        need(isinstance(self.attention_block, int) and self.attention_block >= 1,
             f"attention_block must be a positive integer, got {self.attention_block!r}")
        need(self.remat in REMAT_POLICIES, f"remat must be one of {REMAT_POLICIES}, got {self.remat!r}")
        for name in ("dtype", "param_dtype"):
            need(getattr(self, name) in ("float32", "bfloat16", "float16"),
                 f"{name} must be float32, bfloat16 or float16, got {getattr(self, name)!r}")
        if self.rope_scaling is not None:
            kind = self.rope_scaling.get("rope_type", self.rope_scaling.get("type"))
            need(kind in ("linear", "llama3", "default"),
                 f"unsupported rope_scaling type {kind!r} (supported: linear, llama3)")

    def __hash__(self) -> int:
        return self._hash

    def replace(self, **changes: Any) -> "ModelConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"model config: unknown key(s) {', '.join(unknown)}")
        return cls(**data)

    def save(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, MODEL_CONFIG_FILE), "w") as f:
            json.dump(self.to_dict(), f, indent=2)

    @classmethod
    def load(cls, directory: str) -> "ModelConfig":
        path = os.path.join(directory, MODEL_CONFIG_FILE)
        return cls.from_dict(read_json(path, f"is {directory} an rlp-jax checkpoint?"))

    def param_count(self) -> int:
        attn = self.d_model * self.head_dim * (2 * self.n_heads + 2 * self.n_kv_heads)
        mlp = 3 * self.d_model * self.mlp_dim
        norms = 2 * self.d_model + (2 * self.head_dim if self.qk_norm else 0)
        head = 0 if self.tie_embeddings else self.vocab_size * self.d_model
        return self.n_layers * (attn + mlp + norms) + self.vocab_size * self.d_model + head + self.d_model
