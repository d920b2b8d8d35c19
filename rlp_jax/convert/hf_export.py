"""Export a model as an HF directory (safetensors + config.json + tokenizer files).

The result loads with `transformers.AutoModelForCausalLM.from_pretrained(OUT)` and
`AutoTokenizer.from_pretrained(OUT)`, so vLLM and evaluation harnesses can take it.
"""

from __future__ import annotations

import json
import os

import jax.numpy as jnp

from rlp_jax import progress
from rlp_jax.convert.layout import hf_from_params
from rlp_jax.errors import check_output_dir, remove_outputs, writing
from rlp_jax.model.config import ModelConfig
from rlp_jax.tokenizer import HF_TOKENIZER_FILE, SENTENCEPIECE_FILE, SPECIAL_TOKENS_FILE

# Everything an export writes, or that would be read beside it (a sharded checkpoint's index
# would shadow our model.safetensors): an existing one is replaced only with --force.
HF_DIR_FILES = ("model.safetensors", "model.safetensors.index.json", "config.json", "tokenizer_config.json",
                SENTENCEPIECE_FILE, HF_TOKENIZER_FILE, SPECIAL_TOKENS_FILE)

_ARCHITECTURES = {"llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM"}


def hf_config(cfg: ModelConfig, tokenizer=None) -> dict:
    config = {
        "architectures": [_ARCHITECTURES[cfg.family]],
        "model_type": cfg.family,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.mlp_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.rms_eps,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": cfg.rope_scaling,
        "tie_word_embeddings": cfg.tie_embeddings,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "torch_dtype": "float32",
    }
    if tokenizer is not None:
        config.update(bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id,
                      pad_token_id=tokenizer.pad_id)
    return config


def _tokenizer_config(tokenizer) -> dict:
    def piece(token_id):
        return None if token_id is None else tokenizer.id_to_piece(token_id)

    return {"bos_token": piece(tokenizer.bos_id), "eos_token": piece(tokenizer.eos_id),
            "pad_token": piece(tokenizer.pad_id), "add_bos_token": bool(tokenizer.add_bos),
            "add_eos_token": False, "model_max_length": 1 << 30}


def export_hf(cfg: ModelConfig, params, out: str, tokenizer=None, dtype: str = "float32",
              force: bool = False) -> str:
    """Write `out/` as an HF checkpoint; returns its absolute path. Files of an earlier
    export (or a user's own config.json) there are replaced only with `force`."""
    out = os.path.abspath(out)
    check_output_dir(out, force, HF_DIR_FILES, "--to-hf")
    with writing(out):
        if force and os.path.isdir(out):
            remove_outputs(out, HF_DIR_FILES)
        os.makedirs(out, exist_ok=True)
        _write_hf(cfg, params, out, tokenizer, dtype)
    return out


def _write_hf(cfg: ModelConfig, params, out: str, tokenizer, dtype: str) -> None:
    from safetensors.numpy import save_file

    from rlp_jax.tokenizer import SentencePieceTokenizer

    bar = progress.bar(desc="export", total=2 + (tokenizer is not None), unit="file")
    bar.set_postfix_str("gathering tensors")
    tensors = hf_from_params(cfg, params, jnp.dtype(dtype))
    bar.set_postfix_str("model.safetensors")
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    bar.update()
    config = hf_config(cfg, tokenizer)
    config["torch_dtype"] = dtype
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    bar.update()
    if tokenizer is not None:
        bar.set_postfix_str("tokenizer")
        tokenizer.save(out)
        tok_config = _tokenizer_config(tokenizer)
        tok_config["tokenizer_class"] = ("LlamaTokenizer" if isinstance(tokenizer, SentencePieceTokenizer)
                                         else "PreTrainedTokenizerFast")
        with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
            json.dump(tok_config, f, indent=2)
        bar.update()
    bar.close()
