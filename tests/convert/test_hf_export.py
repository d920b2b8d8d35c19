"""Export round trip: transformers loads our export and its logits match ours (≤ 1e-4)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from rlp_jax.model import transformer as model
from rlp_jax.cli import main as cli_main  # noqa: E402
from rlp_jax.convert.hf_export import export_hf  # noqa: E402
from rlp_jax.model.config import ModelConfig  # noqa: E402
from rlp_jax.model.io import save_model  # noqa: E402

CONFIGS = {
    "llama_untied_llama3_rope": ModelConfig(
        family="llama", vocab_size=90, d_model=48, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16,
        mlp_dim=72, tie_embeddings=False, rope_theta=5e4,
        rope_scaling={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
    "qwen3_tied_unstacked": ModelConfig(
        family="qwen3", vocab_size=90, d_model=48, n_layers=2, n_heads=6, n_kv_heads=3, head_dim=8,
        mlp_dim=72, tie_embeddings=True, qk_norm=True, rms_eps=1e-6, scan_layers=False),
}


def _randomize_norms(params, key):
    """Norm scales are ones at init; perturb them so a swapped norm would show."""
    def perturb(path, x):
        name = jax.tree_util.keystr(path)
        if "norm" in name:
            return x + 0.3 * jax.random.normal(jax.random.fold_in(key, hash(name) % 1000), x.shape)
        return x
    return jax.tree_util.tree_map_with_path(perturb, params)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_transformers_matches_our_logits_after_export(tmp_path, name):
    cfg = CONFIGS[name]
    params = _randomize_norms(model.init_params(cfg, jax.random.key(0)), jax.random.key(1))
    export_hf(cfg, params, str(tmp_path / "hf"))
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 33))
    with torch.no_grad():
        ref = hf(torch.tensor(tokens)).logits.numpy()
    ours = np.asarray(model.forward_compiled(params, cfg, jnp.asarray(tokens, jnp.int32)))
    assert np.abs(ours - ref).max() <= 1e-4


def test_export_cli_with_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    from rlp_jax.tokenizer import HFTokenizer

    vocab = {"<s>": 0, "</s>": 1, "[UNK]": 2, "the": 3, "cat": 4, "sat": 5}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    cfg = CONFIGS["qwen3_tied_unstacked"]
    params = model.init_params(cfg, jax.random.key(0))
    save_model(str(tmp_path / "m"), cfg, params, HFTokenizer(tok, bos_id=0, eos_id=1, add_bos=True))
    assert cli_main(["export", "--checkpoint", str(tmp_path / "m"), "--to-hf", str(tmp_path / "hf")]) == 0
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert hf_tok("the cat sat", add_special_tokens=False)["input_ids"] == [3, 4, 5]
    assert (hf_tok.bos_token, hf_tok.eos_token) == ("<s>", "</s>")
    assert cli_main(["export", "--checkpoint", str(tmp_path / "m"), "--to-hf", str(tmp_path / "hf")]) == 2


def test_export_and_eval_from_a_training_run(tmp_path):
    """A run's EMA parameters export to transformers and evaluate like our forward."""
    import json as json_lib

    from train_helpers import REPO, run_train

    from rlp_jax.train.checkpoint import restore_params

    run_dir = tmp_path / "run"
    result = run_train(["--config", f"{REPO}/configs/tiny.yaml", f"run.run_dir={run_dir}", "run.steps=2",
                        "run.eval_every=0", "run.progress=false", "prepare.builtin_docs=200"],
                       cache=str(tmp_path / "cache"), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert cli_main(["export", "--checkpoint", str(run_dir), "--params", "ema", "--to-hf", str(tmp_path / "hf")]) == 0
    cfg, ema = restore_params(str(run_dir), "ema_params")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (1, 20))
    with torch.no_grad():
        ref = hf(torch.tensor(tokens)).logits.numpy()
    assert np.abs(np.asarray(model.forward_compiled(ema, cfg, jnp.asarray(tokens, jnp.int32))) - ref).max() <= 1e-4
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert hf_tok.decode(hf_tok("12 + 7 = 19", add_special_tokens=False)["input_ids"]) == "12 + 7 = 19"
    text = tmp_path / "t.txt"
    text.write_text(" ".join(f"{i} + {i} = {2 * i}." for i in range(60)))
    assert cli_main(["eval", "--checkpoint", str(run_dir), "--params", "ema", "--text-file", str(text),
                     "--seq-len", "32", "--batches", "1", "--out", str(tmp_path / "ev")]) == 0
    assert json_lib.loads((tmp_path / "ev" / "eval.json").read_text())["params"] == "ema"
    # Without --data a run evaluates on its own corpus's validation split.
    assert cli_main(["eval", "--checkpoint", str(run_dir), "--seq-len", "32", "--batch-size", "2",
                     "--batches", "1", "--proxy", "ema", "--out", str(tmp_path / "ev2")]) == 0
    assert json_lib.loads((tmp_path / "ev2" / "eval.json").read_text())["all"]["nll_count"] == 2 * 31
    # score and sample read a run directory the way eval and export do (they used to refuse it).
    assert cli_main(["score", "--checkpoint", str(run_dir), "--params", "ema", "--text", "12 + 7 = 19"]) == 0
    assert cli_main(["sample", "--checkpoint", str(run_dir), "--prompt", "12 + 7 =", "--max-new-tokens", "3"]) == 0
