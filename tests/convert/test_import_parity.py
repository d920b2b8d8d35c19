"""Parity on fresh configs: transformers' tiny random Llama / Qwen3 → safetensors → our importer.

Covers tied and untied heads, QK-norm, head_dim ≠ d_model / heads, GQA and Llama-3 RoPE
scaling; each must match transformers' fp32 logits to 1e-4.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax.numpy as jnp  # noqa: E402

from rlp_jax.model import transformer as model
from rlp_jax.convert import convert  # noqa: E402
from rlp_jax.model.io import load_model  # noqa: E402

BASE = dict(vocab_size=97, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
            rms_norm_eps=1e-6)

CASES = {
    "llama_tied_gqa": ("llama", dict(tie_word_embeddings=True, rope_theta=10000.0)),
    "llama_untied_mha": ("llama", dict(tie_word_embeddings=False, num_key_value_heads=4, rope_theta=500.0)),
    "llama_head_dim_llama3_rope": ("llama", dict(
        tie_word_embeddings=False, head_dim=16, rope_theta=10000.0,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 16})),
    "qwen3_tied_qknorm": ("qwen3", dict(tie_word_embeddings=True, head_dim=16, rope_theta=1e6)),
    "qwen3_untied_gqa1": ("qwen3", dict(tie_word_embeddings=False, head_dim=8, num_key_value_heads=1)),
}


def _hf_model(family: str, overrides: dict):
    torch.manual_seed(0)
    if family == "llama":
        config = transformers.LlamaConfig(**{**BASE, **overrides})
        hf = transformers.LlamaForCausalLM(config)
    else:
        config = transformers.Qwen3Config(**{**BASE, **overrides})
        hf = transformers.Qwen3ForCausalLM(config)
    with torch.no_grad():  # random norms so that a skipped norm weight would show
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
    return hf.eval()


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("scan_layers", [True, False])
def test_fresh_config_parity(tmp_path, case, scan_layers):
    family, overrides = CASES[case]
    hf = _hf_model(family, overrides)
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    convert(f"hf:{tmp_path / 'hf'}", str(tmp_path / "ours"), scan_layers=scan_layers)
    cfg, params = load_model(str(tmp_path / "ours"))
    assert cfg.family == family and cfg.qk_norm == (family == "qwen3")
    assert cfg.tie_embeddings == overrides["tie_word_embeddings"]

    rng = np.random.default_rng(1)
    tokens = rng.integers(0, BASE["vocab_size"], size=(2, 40))
    with torch.no_grad():
        ref = hf(torch.tensor(tokens)).logits.numpy()
    ours = np.asarray(model.forward_compiled(params, cfg, jnp.asarray(tokens, jnp.int32)))
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-4


def test_sharded_safetensors_index(tmp_path):
    hf = _hf_model("llama", dict(tie_word_embeddings=False))
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True, max_shard_size="20KB")
    assert (tmp_path / "hf" / "model.safetensors.index.json").exists()
    convert(f"hf:{tmp_path / 'hf'}", str(tmp_path / "ours"))
    cfg, params = load_model(str(tmp_path / "ours"))
    tokens = np.arange(30)[None] % BASE["vocab_size"]
    with torch.no_grad():
        ref = hf(torch.tensor(tokens)).logits.numpy()
    ours = np.asarray(model.forward_compiled(params, cfg, jnp.asarray(tokens, jnp.int32)))
    assert np.abs(ours - ref).max() <= 1e-4


def test_hf_directory_tokenizer_travels_with_the_model(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    from rlp_jax.tokenizer import load_tokenizer

    hf = _hf_model("qwen3", dict(tie_word_embeddings=True, head_dim=16))
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    vocab = {"<s>": 0, "</s>": 1, "[UNK]": 2, "hello": 3, "world": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "hf" / "tokenizer.json"))
    (tmp_path / "hf" / "tokenizer_config.json").write_text(
        '{"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true}')
    convert(f"hf:{tmp_path / 'hf'}", str(tmp_path / "ours"))
    restored = load_tokenizer(str(tmp_path / "ours"))
    assert restored.encode("hello world zebra") == [3, 4, 2]
    assert (restored.bos_id, restored.eos_id, restored.add_bos) == (0, 1, True)
