"""Import an HF checkpoint directory: `config.json` + safetensors (single or sharded)."""

from __future__ import annotations

import os

import numpy as np

from rlp_jax.errors import UserError, read_json
from rlp_jax.model.config import ModelConfig

SUPPORTED_MODEL_TYPES = ("llama", "qwen3")


def hf_model_config(directory: str) -> ModelConfig:
    path = os.path.join(directory, "config.json")
    hf = read_json(path, "an HF model directory needs config.json")
    model_type = hf.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UserError(f"unsupported model_type {model_type!r} in {path} "
                        f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})")
    for flag in ("attention_bias", "mlp_bias"):
        if hf.get(flag):
            raise UserError(f"{path}: {flag}=true is not supported")
    if hf.get("hidden_act", "silu") != "silu":
        raise UserError(f"{path}: hidden_act {hf['hidden_act']!r} is not supported (silu only)")
    n_heads = hf["num_attention_heads"]
    # transformers ≥ 5 writes `rope_parameters` (theta + scaling); older versions write
    # `rope_theta` and `rope_scaling` separately.
    rope = dict(hf.get("rope_parameters") or {})
    theta = float(hf.get("rope_theta") or rope.pop("rope_theta", 10000.0))
    rope.pop("rope_theta", None)
    scaling = hf.get("rope_scaling") or rope or None
    if scaling and scaling.get("rope_type", scaling.get("type", "default")) == "default":
        scaling = None
    try:
        return ModelConfig(
            family=model_type,
            vocab_size=hf["vocab_size"],
            d_model=hf["hidden_size"],
            n_layers=hf["num_hidden_layers"],
            n_heads=n_heads,
            n_kv_heads=hf.get("num_key_value_heads") or n_heads,
            head_dim=hf.get("head_dim") or hf["hidden_size"] // n_heads,
            mlp_dim=hf["intermediate_size"],
            rope_theta=theta,
            rope_scaling=scaling,
            rms_eps=float(hf.get("rms_norm_eps", 1e-6)),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
            qk_norm=model_type == "qwen3",
            max_seq_len=int(hf.get("max_position_embeddings", 2048)),
        )
    except KeyError as err:
        raise UserError(f"{path} lacks required key {err}") from None


def _safetensor_files(directory: str) -> list[str]:
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.isfile(index):
        weight_map = read_json(index, "").get("weight_map")
        if not isinstance(weight_map, dict):
            raise UserError(f"{index} has no weight_map")
        files = sorted(set(weight_map.values()))
        return [os.path.join(directory, name) for name in files]
    single = os.path.join(directory, "model.safetensors")
    if os.path.isfile(single):
        return [single]
    raise UserError(f"no model.safetensors or model.safetensors.index.json in {directory}")


def hf_tensor_getter(directory: str):
    """HF-tensor-name -> float32 numpy array, across all shards."""
    from safetensors import safe_open

    handles = {}
    for path in _safetensor_files(directory):
        if not os.path.isfile(path):
            raise UserError(f"missing safetensors shard {path}")
        try:
            handle = safe_open(path, framework="flax")
        except Exception as err:
            raise UserError(f"cannot read {path} (truncated or corrupt?): {err}") from None
        for key in handle.keys():
            handles[key] = handle

    def get(name: str) -> np.ndarray:
        if name not in handles:
            raise UserError(f"safetensors in {directory} lack tensor {name}")
        try:
            return np.asarray(handles[name].get_tensor(name), dtype=np.float32)
        except Exception as err:
            raise UserError(f"cannot read tensor {name} (truncated or corrupt file?): {err}") from None

    return get


def hf_tokenizer(directory: str):
    """The directory's tokenizer (tokenizer.json or tokenizer.model), or None."""
    from rlp_jax.tokenizer import load_tokenizer

    for name in ("tokenizer.json", "tokenizer.model"):
        if os.path.isfile(os.path.join(directory, name)):
            return load_tokenizer(os.path.join(directory, name))
    return None
