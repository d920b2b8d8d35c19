"""Map HF-named weight tensors (the Llama / Qwen3 safetensors layout) onto our params.

Both importers (safetensors and GGUF) first produce tensors under HF names, so this one
table is the only place that knows how our parameter tree is laid out.
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
import numpy as np

from rlp_jax.errors import UserError
from rlp_jax.model_config import ModelConfig

TensorGetter = Callable[[str], np.ndarray]


def _checked(get: TensorGetter, name: str, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(get(name), dtype=np.float32)
    if array.shape != shape:
        raise UserError(f"tensor {name} has shape {array.shape}, expected {shape} from the model config")
    return array


def params_from_hf(cfg: ModelConfig, get: TensorGetter) -> dict:
    """Build the (stacked or per-layer) parameter tree from HF-named tensors."""
    d, h, kvh, hd, f, v = (cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim,
                           cfg.mlp_dim, cfg.vocab_size)
    layers = []
    for i in range(cfg.n_layers):
        pre = f"model.layers.{i}."
        layer = {
            "attn_norm": {"scale": _checked(get, pre + "input_layernorm.weight", (d,))},
            "mlp_norm": {"scale": _checked(get, pre + "post_attention_layernorm.weight", (d,))},
            "q": {"kernel": _checked(get, pre + "self_attn.q_proj.weight", (h * hd, d)).T.reshape(d, h, hd)},
            "k": {"kernel": _checked(get, pre + "self_attn.k_proj.weight", (kvh * hd, d)).T.reshape(d, kvh, hd)},
            "v": {"kernel": _checked(get, pre + "self_attn.v_proj.weight", (kvh * hd, d)).T.reshape(d, kvh, hd)},
            "o": {"kernel": _checked(get, pre + "self_attn.o_proj.weight", (d, h * hd)).T.reshape(h, hd, d)},
            "gate": {"kernel": _checked(get, pre + "mlp.gate_proj.weight", (f, d)).T},
            "up": {"kernel": _checked(get, pre + "mlp.up_proj.weight", (f, d)).T},
            "down": {"kernel": _checked(get, pre + "mlp.down_proj.weight", (d, f)).T},
        }
        if cfg.qk_norm:
            layer["q_norm"] = {"scale": _checked(get, pre + "self_attn.q_norm.weight", (hd,))}
            layer["k_norm"] = {"scale": _checked(get, pre + "self_attn.k_norm.weight", (hd,))}
        layers.append(layer)

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


def _stack(layers: list[dict]) -> dict:
    return {k: (_stack([l[k] for l in layers]) if isinstance(layers[0][k], dict)
                else np.stack([l[k] for l in layers])) for k in layers[0]}


def _cast(tree: dict, dtype) -> dict:
    return {k: _cast(v, dtype) if isinstance(v, dict) else np.asarray(v).astype(dtype)
            for k, v in tree.items()}
