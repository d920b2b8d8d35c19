"""Import a llama.cpp GGUF file (Llama family): config, dequantized weights, tokenizer.

Two details matter for exact logits: tensors are dequantized with the `gguf` package to
float32, and llama.cpp stores the rows of `attn_q` / `attn_k` permuted for its own RoPE
layout, which we undo to get the HF (rotate-half) convention our model uses.
"""

from __future__ import annotations

import numpy as np

from rlp_jax.errors import UserError, need_file
from rlp_jax.model.config import ModelConfig

SUPPORTED_ARCHITECTURES = ("llama",)

_TENSOR_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def open_gguf(path: str):
    """A `GGUFReader`, with missing / truncated / corrupt files turned into UserError."""
    import gguf

    need_file(path, "GGUF file")
    try:
        return gguf.GGUFReader(path)
    except Exception as err:  # the reader raises ValueError, struct.error, IndexError, ...
        raise UserError(f"cannot read GGUF file {path} (truncated or corrupt?): {err}") from None


def _field(reader, key: str, default=None):
    field = reader.fields.get(key)
    if field is None:
        if default is None:
            raise UserError(f"GGUF file lacks metadata key {key}")
        return default
    return field.contents()


def gguf_model_config(reader) -> ModelConfig:
    arch = _field(reader, "general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UserError(f"unsupported GGUF architecture {arch!r} (supported: {', '.join(SUPPORTED_ARCHITECTURES)})")
    d_model = int(_field(reader, f"{arch}.embedding_length"))
    n_heads = int(_field(reader, f"{arch}.attention.head_count"))
    tensor_names = {t.name for t in reader.tensors}
    vocab = int(_field(reader, f"{arch}.vocab_size", len(_field(reader, "tokenizer.ggml.tokens"))))
    scaling_type = _field(reader, f"{arch}.rope.scaling.type", "none")
    rope_scaling = None
    if scaling_type == "linear":
        rope_scaling = {"rope_type": "linear", "factor": float(_field(reader, f"{arch}.rope.scaling.factor"))}
    elif scaling_type != "none" or "rope_freqs.weight" in tensor_names:
        raise UserError(f"unsupported GGUF rope scaling {scaling_type!r}")
    return ModelConfig(
        family="llama",
        vocab_size=vocab,
        d_model=d_model,
        n_layers=int(_field(reader, f"{arch}.block_count")),
        n_heads=n_heads,
        n_kv_heads=int(_field(reader, f"{arch}.attention.head_count_kv", n_heads)),
        head_dim=int(_field(reader, f"{arch}.attention.key_length", d_model // n_heads)),
        mlp_dim=int(_field(reader, f"{arch}.feed_forward_length")),
        rope_theta=float(_field(reader, f"{arch}.rope.freq_base", 10000.0)),
        rope_scaling=rope_scaling,
        rms_eps=float(_field(reader, f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
        tie_embeddings="output.weight" not in tensor_names,
        max_seq_len=int(_field(reader, f"{arch}.context_length", 2048)),
    )


def _unpermute(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's per-head interleaving of rotary rows (inverse of its `permute`)."""
    rows, cols = weight.shape
    return (weight.reshape(n_heads, rows // n_heads // 2, 2, cols)
            .swapaxes(1, 2).reshape(rows, cols))


def gguf_tensor_getter(reader, cfg: ModelConfig):
    """A function HF-tensor-name -> float32 array, dequantizing lazily."""
    import gguf

    by_name = {t.name: t for t in reader.tensors}
    hf_to_gguf = {"model.embed_tokens.weight": "token_embd.weight",
                  "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}
    for i in range(cfg.n_layers):
        for short, hf in _TENSOR_NAMES.items():
            hf_to_gguf[f"model.layers.{i}.{hf}.weight"] = f"blk.{i}.{short}.weight"

    def get(hf_name: str) -> np.ndarray:
        name = hf_to_gguf.get(hf_name)
        tensor = by_name.get(name) if name else None
        if tensor is None:
            raise UserError(f"GGUF file lacks tensor {name or hf_name}")
        try:
            array = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        except Exception as err:
            raise UserError(f"cannot dequantize {name} ({tensor.tensor_type.name}): {err}") from None
        array = np.asarray(array, np.float32).reshape(tuple(int(s) for s in reversed(tensor.shape)))
        if name.endswith("attn_q.weight"):
            array = _unpermute(array, cfg.n_heads)
        elif name.endswith("attn_k.weight"):
            array = _unpermute(array, cfg.n_kv_heads)
        return array

    return get


def gguf_tokenizer(reader):
    """Byte-level BPE tokenizer from GGUF metadata (`tokenizer.ggml.model == "gpt2"`)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, AddedToken

    from rlp_jax.tokenizer import HFTokenizer

    kind = _field(reader, "tokenizer.ggml.model")
    if kind != "gpt2":
        raise UserError(f"unsupported GGUF tokenizer model {kind!r} (supported: gpt2 byte-level BPE)")
    tokens = list(_field(reader, "tokenizer.ggml.tokens"))
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges")]
    types = list(_field(reader, "tokenizer.ggml.token_type", [1] * len(tokens)))
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges,
                               fuse_unk=False, byte_fallback=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if _field(reader, "tokenizer.ggml.pre", "default") in ("smollm", "starcoder", "refact"):
        # These vocabularies split digits one by one before the GPT-2 regex.
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), byte_level])
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    control = [AddedToken(t, special=True, normalized=False)
               for t, kind in zip(tokens, types) if kind == 3]
    tok.add_special_tokens(control)

    def special(key):
        value = reader.fields.get(f"tokenizer.ggml.{key}_token_id")
        return None if value is None else int(value.contents())

    add_bos = bool(_field(reader, "tokenizer.ggml.add_bos_token", True))
    return HFTokenizer(tok, bos_id=special("bos"), eos_id=special("eos"), pad_id=special("padding"),
                       add_bos=add_bos)
