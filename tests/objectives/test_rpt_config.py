"""RPT's settings: RPTConfig's defaults and the shipped RPT config are the paper's (§3.3, Table 5)."""

import os

import pytest
from train_helpers import REPO

from rlp_jax.errors import UserError
from rlp_jax.objectives.config import RPTConfig
from rlp_jax.train import config


def test_rpt_defaults_are_the_papers():
    pcfg = RPTConfig()
    assert (pcfg.advantage, pcfg.std, pcfg.loss_aggregation, pcfg.kl_beta) == ("grpo", "bessel", "token", 0.0)
    assert (pcfg.entropy_threshold, pcfg.dynamic_sampling_from, pcfg.think_end) == (0.5, 500, "</think>")
    assert pcfg.proxy == "" and pcfg.template.startswith("{context}") and "\\boxed{}" in pcfg.prompt_suffix
    with pytest.raises(UserError, match="rpt.template"):
        RPTConfig(template="Complete: {context}")  # nothing may precede the shared prefix


def test_shipped_rpt_config_has_the_paper_settings():
    cfg = config.load_config(os.path.join(REPO, "configs", "qwen3_1.7b_rpt_v5p.yaml"))
    assert cfg.run.objective == "rpt"
    assert (cfg.rollout.group_size, cfg.rollout.temperature, cfg.rollout.thought_len) == (8, 0.8, 8192)
    opt = cfg.optimizer
    assert (opt.learning_rate, opt.b1, opt.b2, opt.weight_decay, opt.grad_clip) == (1e-6, 0.9, 0.999, 0.01, 0.2)
    assert cfg.data.batch_size * cfg.rollout.positions_per_window == 256  # prompts per step
    assert cfg.rpt.dynamic_sampling_from == 500 and cfg.rpt.kl_beta == 0.0


def test_a_lookahead_that_leaves_no_position_is_refused():
    with pytest.raises(UserError, match="rpt.lookahead"):
        config.load_config(os.path.join(REPO, "configs", "tiny_rpt.yaml"), ["rpt.lookahead=60"])
