"""RPT's "next-token reasoning" accuracy (Dong et al. 2025, §4.1-4.2): the model reads the
context and the template's instruction, thinks, closes the thought and states a prediction in
`\\boxed{}`; the prediction is right when the training reward would be 1 (byte prefix of the
continuation ending on a token boundary, after `</think>`). Thinking accuracy, beside it,
is the greedy next token after a teacher-forced close marker (RLP's view).
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from rlp_jax.model.config import ModelConfig
from rlp_jax.objectives.config import RPTConfig
from rlp_jax.objectives.rpt import completion_config, rpt_rewards
from rlp_jax.rollout.config import RolloutConfig
from rlp_jax.rollout.thoughts import rollout_thoughts


class Reasoning:
    """What reasoning accuracy needs: the completion rollout settings, RPT's answer rules and
    the tokenizer (answers are compared as text on the host)."""

    def __init__(self, rcfg: RolloutConfig, tokenizer, pcfg: RPTConfig = RPTConfig()):
        self.rcfg = completion_config(rcfg, tokenizer, pcfg)
        self.pcfg, self.tokenizer = pcfg, tokenizer

    def correct(self, params, cfg: ModelConfig, window, t, key) -> np.ndarray:
        """`[B, K, G]` 1.0 where a completion at position `t [B, K]` earns RPT's reward."""
        roll = _completions(params, cfg, self.rcfg, window, t, key)
        rewards = rpt_rewards(roll, window, np.ones(t.shape, bool), self.tokenizer, self.pcfg, self.rcfg.group_size)
        return rewards.reshape(t.shape + (self.rcfg.group_size,))


@functools.partial(jax.jit, static_argnames=("cfg", "rcfg"))
def _completions(params, cfg: ModelConfig, rcfg: RolloutConfig, window, t, key):
    return rollout_thoughts(params, cfg, rcfg, window, t, key)
