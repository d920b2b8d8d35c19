"""Evaluation numbers equal direct computations; buckets nest; the CLI writes eval.json + PNG."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np

from rlp_jax.evaluation import evaluate
from rlp_jax.model import transformer as model
from rlp_jax.cli import main as cli_main
from rlp_jax.model.config import ModelConfig
from rlp_jax.model.io import save_model
from rlp_jax.rollout.config import RolloutConfig

CFG = ModelConfig(vocab_size=40, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, mlp_dim=48)


def _batch(seed, shape=(3, 24)):
    tokens = np.asarray(jax.random.randint(jax.random.key(seed), shape, 3, CFG.vocab_size), np.int32)
    segments = np.ones_like(tokens)
    segments[0, 15:] = 2  # a second document inside row 0
    segments[1, 20:] = 0  # padding at the end of row 1
    positions = np.where(segments == 2, np.arange(shape[1]) - 15, np.arange(shape[1]))
    return {"tokens": tokens, "segment_ids": segments, "positions": positions.astype(np.int32)}


def test_top_k_entropy_of_a_uniform_top16_is_log16():
    logits = jnp.concatenate([jnp.zeros(16), jnp.full(10, -1e9)])
    assert abs(float(evaluate.top_k_entropy(logits)) - math.log(16)) < 1e-6


def test_no_think_figures_equal_direct_computation():
    params = model.init_params(CFG, jax.random.key(0))
    batches = [_batch(1), _batch(2)]
    result = evaluate.evaluate_batches(params, CFG, batches)
    correct, nll, count = [], [], 0
    for b in batches:
        logits = model.forward_compiled(params, CFG, jnp.asarray(b["tokens"]), jnp.asarray(b["positions"]),
                               jnp.asarray(b["segment_ids"]))
        logp = np.asarray(jax.nn.log_softmax(logits[:, :-1]))
        targets = b["tokens"][:, 1:]
        seg = b["segment_ids"]
        valid = (seg[:, 1:] == seg[:, :-1]) & (seg[:, 1:] > 0)
        correct += list((logp.argmax(-1) == targets)[valid])
        nll += list(-np.take_along_axis(logp, targets[..., None], -1)[..., 0][valid])
        count += int(valid.sum())
    assert result["all"]["nll_count"] == count == 2 * (22 + 19 + 23)  # boundary, padding, full row
    assert abs(result["all"]["no_think_accuracy"] - np.mean(correct)) < 1e-9
    assert abs(result["all"]["nll"] - np.mean(nll)) < 1e-5
    assert abs(result["all"]["perplexity"] - math.exp(np.mean(nll))) < 1e-3
    counts = [result[b]["nll_count"] for b in ("all", "easy", "medium", "hard")]
    assert counts == sorted(counts, reverse=True) and counts[1] > 0


def test_thinking_figures_are_consistent():
    params = model.init_params(CFG, jax.random.key(0))
    rcfg = RolloutConfig(group_size=2, positions_per_window=3, thought_len=4, temperature=1.0,
                         open_ids=(1,), close_ids=(2,), min_context=4)
    result = evaluate.evaluate_batches(params, CFG, [_batch(3)], rcfg)
    allb = result["all"]
    assert allb["thinking_accuracy_count"] == 3 * 3 * 2
    assert allb["information_gain_count"] == 3 * 3 * 2
    assert allb["no_think_accuracy_at_thought_positions_count"] == 3 * 3
    assert 0.0 <= allb["thinking_accuracy"] <= 1.0 and np.isfinite(allb["information_gain"])


def test_eval_cli_on_a_text_file(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    from rlp_jax.tokenizer import HFTokenizer

    words = ["<s>", "<think>", "</think>", "<eos>"] + [f"w{i}" for i in range(30)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<s>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    save_model(str(tmp_path / "m"), CFG, model.init_params(CFG, jax.random.key(0)), HFTokenizer(tok, eos_id=3))
    text = " ".join(f"w{(i * 7) % 30}" for i in range(200))
    (tmp_path / "t.txt").write_text(text)
    out = tmp_path / "ev"
    code = cli_main(["eval", "--checkpoint", str(tmp_path / "m"), "--text-file", str(tmp_path / "t.txt"),
                     "--seq-len", "32", "--batch-size", "2", "--batches", "2", "--rpt",
                     "--thought-len", "4", "--out", str(out)])
    assert code == 0
    result = json.loads((out / "eval.json").read_text())
    assert result["all"]["nll_count"] == 4 * 31
    assert result["all"]["thinking_accuracy_count"] == 4 * 4 * 2
    assert result["all"]["reasoning_accuracy_count"] == 4 * 4 * 2  # --rpt: beside thinking accuracy
    assert result["proxy"].startswith("the evaluated model")  # a model directory has no base model
    assert (out / "eval.png").read_bytes()[:4] == b"\x89PNG"
    assert cli_main(["eval", "--checkpoint", str(tmp_path / "m"), "--text-file", str(tmp_path / "no.txt")]) == 2
