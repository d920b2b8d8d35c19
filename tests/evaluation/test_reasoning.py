"""RPT's reasoning accuracy is the training reward of the completions; difficulty comes from
a run's base model by default."""

import argparse

import jax.numpy as jnp
import numpy as np
from byte_bpe import tiny_byte_bpe

from rlp_jax.cli import eval_cmd
from rlp_jax.evaluation import reasoning
from rlp_jax.model.config import ModelConfig
from rlp_jax.rollout.config import RolloutConfig
from rlp_jax.rollout.thoughts import Rollout

TOK = tiny_byte_bpe([" Paris", " is", "\\boxed{", "</think>"], specials=["<think>", "<eos>"])
CFG = ModelConfig(vocab_size=TOK.vocab_size, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=8,
                  mlp_dim=32)


def test_reasoning_accuracy_scores_the_boxed_answer_after_the_thought(monkeypatch):
    rcfg = RolloutConfig(group_size=3, positions_per_window=1, thought_len=32, min_context=1).with_markers(TOK)
    window = jnp.asarray([TOK.encode("Paris is Paris")])
    first = len(TOK.encode("Paris"))
    t = jnp.asarray([[first]])  # the continuation is " is Paris"
    texts = ["</think>\\boxed{ is}", "\\boxed{ is}", "x</think>\\boxed{ is Paris}"]
    ids = np.zeros((1, 3, 32), np.int32)
    for r, text in enumerate(texts):
        ids[0, r, : len(TOK.encode(text))] = TOK.encode(text)
    roll = Rollout(t=jnp.full((1, 3), first, jnp.int32), thoughts=jnp.asarray(ids),
                   lengths=jnp.asarray([[len(TOK.encode(x)) for x in texts]]), logp=jnp.zeros((1, 3, 32)),
                   s_pred=jnp.zeros((1, 3)), prediction=jnp.zeros((1, 3), jnp.int32))
    monkeypatch.setattr(reasoning, "_completions", lambda *a: roll)
    judge = reasoning.Reasoning(rcfg, TOK)
    assert judge.rcfg.close_ids == (TOK.eos_id,) and len(judge.rcfg.open_ids) > 1  # instruction, then <think>
    np.testing.assert_array_equal(judge.correct(None, CFG, window, t, None), [[[1.0, 0.0, 1.0]]])


def test_difficulty_proxy_defaults_to_the_runs_base_model():
    loaded = []

    def load(path, which):
        loaded.append((path, which))
        return CFG, {"p": path}, None, None
    args = argparse.Namespace(proxy=None, checkpoint="run")
    proxy, name = eval_cmd._proxy(args, load, lambda path: "/models/base")
    assert proxy == ({"p": "/models/base"}, CFG) and name == "/models/base (the run's init_from base model)"
    proxy, name = eval_cmd._proxy(args, load, lambda path: None)
    assert proxy is None and "evaluated model" in name
    args.proxy = "self"
    assert eval_cmd._proxy(args, load, lambda path: "/models/base")[0] is None
    assert loaded == [("/models/base", "policy")]
