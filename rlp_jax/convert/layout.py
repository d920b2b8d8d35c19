"""One table between HF tensor names (the Llama / Qwen3 safetensors layout) and our params.

Importers (safetensors, GGUF) produce tensors under HF names and call `params_from_hf`;
the exporter calls `hf_from_params`. Both read `_LAYER_TABLE`, so the mapping is written
once and the two directions cannot drift apart.
"""

from __future__ import annotations

from typing import Callable, Iterator

import jax.numpy as jnp
import numpy as np

from rlp_jax.errors import UserError
from rlp_jax.model.config import ModelConfig

TensorGetter = Callable[[str], np.ndarray]

# (HF name inside `model.layers.{i}.`, our module name, kind); kinds are described in _shapes.
_LAYER_TABLE = (
    ("input_layernorm.weight", "attn_norm", "norm"),
    ("post_attention_layernorm.weight", "mlp_norm", "norm"),
    ("self_attn.q_proj.weight", "q", "q_proj"),
    ("self_attn.k_proj.weight", "k", "kv_proj"),
    ("self_attn.v_proj.weight", "v", "kv_proj"),
    ("self_attn.o_proj.weight", "o", "o_proj"),
    ("mlp.gate_proj.weight", "gate", "mlp_in"),
    ("mlp.up_proj.weight", "up", "mlp_in"),
    ("mlp.down_proj.weight", "down", "mlp_out"),
    ("self_attn.q_norm.weight", "q_norm", "head_norm"),
    ("self_attn.k_norm.weight", "k_norm", "head_norm"),
)


def _shapes(cfg: ModelConfig, kind: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(HF shape, our shape) of one layer tensor. HF Linear weights are [out, in]."""
    d, h, kvh, hd, f = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.mlp_dim
    return {
        "norm": ((d,), (d,)),
        "head_norm": ((hd,), (hd,)),
        "q_proj": ((h * hd, d), (d, h, hd)),
        "kv_proj": ((kvh * hd, d), (d, kvh, hd)),
        "o_proj": ((d, h * hd), (h, hd, d)),
        "mlp_in": ((f, d), (d, f)),
        "mlp_out": ((d, f), (f, d)),
    }[kind]


def _to_ours(array: np.ndarray, ours_shape) -> np.ndarray:
    return array.T.reshape(ours_shape) if array.ndim == 2 else array


def _to_hf(array: np.ndarray, hf_shape) -> np.ndarray:
    if len(hf_shape) == 1:
        return array
    return np.ascontiguousarray(array.reshape(tuple(reversed(hf_shape))).T)


def _layer_entries(cfg: ModelConfig) -> Iterator[tuple[str, str, tuple, tuple]]:
    for hf_name, ours, kind in _LAYER_TABLE:
        if kind == "head_norm" and not cfg.qk_norm:
            continue
        yield (hf_name, ours) + _shapes(cfg, kind)


def _checked(get: TensorGetter, name: str, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(get(name), dtype=np.float32)
    if array.shape != shape:
        raise UserError(f"tensor {name} has shape {array.shape}, expected {shape} from the model config")
    return array


def tensor_count(cfg: ModelConfig) -> int:
    """How many HF tensors the model has (the length of the conversion's progress bar)."""
    return cfg.n_layers * len(list(_layer_entries(cfg))) + 2 + (not cfg.tie_embeddings)


def params_from_hf(cfg: ModelConfig, get: TensorGetter, bar=None) -> dict:
    """Build the (stacked or per-layer) parameter tree from HF-named tensors; `bar`, a
    progress bar, advances per tensor read (reading and dequantizing take the time)."""
    if bar is not None:
        get = _counted(get, bar)
    layers = []
    for i in range(cfg.n_layers):
        layers.append({ours: {"scale" if len(ours_shape) == 1 else "kernel":
                              _to_ours(_checked(get, f"model.layers.{i}.{hf}", hf_shape), ours_shape)}
                       for hf, ours, hf_shape, ours_shape in _layer_entries(cfg)})
    d, v = cfg.d_model, cfg.vocab_size
    params = {
        "embed": {"embedding": _checked(get, "model.embed_tokens.weight", (v, d))},
        "final_norm": {"scale": _checked(get, "model.norm.weight", (d,))},
    }
    if not cfg.tie_embeddings:
        params["lm_head"] = {"kernel": _checked(get, "lm_head.weight", (v, d)).T}
    if cfg.scan_layers:
        params["layers"] = _stack(layers)
    else:
        params.update({f"layers_{i}": layer for i, layer in enumerate(layers)})
    return {"params": _cast(params, jnp.dtype(cfg.param_dtype))}


def _counted(get: TensorGetter, bar) -> TensorGetter:
    def counted(name: str) -> np.ndarray:
        bar.set_postfix_str(name)
        array = get(name)
        bar.update()
        return array

    return counted


def hf_from_params(cfg: ModelConfig, params: dict, dtype=np.float32) -> dict[str, np.ndarray]:
    """HF-named numpy tensors from our parameter tree (the inverse of `params_from_hf`)."""
    tree = params["params"]

    def layer(i: int) -> dict:
        if cfg.scan_layers:
            return {k: {n: np.asarray(a[i]) for n, a in sub.items()} for k, sub in tree["layers"].items()}
        return tree[f"layers_{i}"]

    out = {"model.embed_tokens.weight": np.asarray(tree["embed"]["embedding"]),
           "model.norm.weight": np.asarray(tree["final_norm"]["scale"])}
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = np.asarray(tree["lm_head"]["kernel"]).T
    for i in range(cfg.n_layers):
        ours_layer = layer(i)
        for hf, ours, hf_shape, _ in _layer_entries(cfg):
            value = np.asarray(next(iter(ours_layer[ours].values())))
            out[f"model.layers.{i}.{hf}"] = _to_hf(value, hf_shape)
    return {k: np.ascontiguousarray(np.asarray(v, np.float32).astype(dtype)) for k, v in out.items()}


def _stack(layers: list[dict]) -> dict:
    return {k: (_stack([l[k] for l in layers]) if isinstance(layers[0][k], dict)
                else np.stack([l[k] for l in layers])) for k in layers[0]}


def _cast(tree: dict, dtype) -> dict:
    return {k: _cast(v, dtype) if isinstance(v, dict) else np.asarray(v).astype(dtype)
            for k, v in tree.items()}
