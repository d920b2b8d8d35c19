"""A config made concrete enough to compile, where neither weights nor data exist.

The architecture comes from `init_from`'s `model_config.json` when that directory is on
this machine, else from the config's named `architecture`, else from its `model:` section.
Thought markers come from the model directory's tokenizer when there is one; without one
they are placeholders of one token each (ids never change memory or FLOPs).
"""

from __future__ import annotations

import dataclasses
import os

from rlp_jax.errors import UserError
from rlp_jax.model.config import ModelConfig
from rlp_jax.model.presets import architecture
from rlp_jax.train.config import TrainConfig
from rlp_jax.train.setup import expand


def model_for(cfg: TrainConfig) -> tuple[ModelConfig, str]:
    """`(model config, where it came from)`."""
    init_from = expand(cfg.init_from)
    if init_from and os.path.isfile(os.path.join(init_from, "model_config.json")):
        loaded = ModelConfig.load(init_from)
        return loaded.replace(**{k: getattr(cfg.model, k) for k in cfg.model_keys_set}), init_from
    if cfg.architecture:
        return cfg.model, f"architecture {cfg.architecture}"
    if init_from:
        raise UserError(f"init_from {init_from} is not on this machine and the config names no architecture: "
                        f"add architecture: NAME (the model's shape) to compile it")
    return cfg.model, "the config's model section"


def _tokenizer(cfg: TrainConfig):
    from rlp_jax.tokenizer import find_tokenizer, load_tokenizer

    for path in (cfg.data.tokenizer, cfg.init_from):
        path = expand(path)
        if path and path != "auto" and (os.path.isfile(path) or (os.path.isdir(path) and find_tokenizer(path))):
            return load_tokenizer(path)
    return None


def concrete(cfg: TrainConfig):
    """`(cfg with the model and markers filled in, tokenizer or None, model source)`."""
    model, source = model_for(cfg)
    tokenizer = _tokenizer(cfg)
    rollout = cfg.rollout
    if tokenizer is not None:
        rollout = rollout.with_markers(tokenizer)
    else:
        rollout = rollout.replace(open_ids=rollout.open_ids or (1,), close_ids=rollout.close_ids or (2,))
    if cfg.run.objective in ("rlp", "rpt"):
        rollout = rollout.resolve_thought_len(cfg.data.seq_len, model.max_seq_len)
        rollout.check(cfg.data.seq_len, model.vocab_size, model.max_seq_len)
    if cfg.data.seq_len > model.max_seq_len:
        raise UserError(f"data.seq_len ({cfg.data.seq_len}) exceeds model.max_seq_len ({model.max_seq_len})")
    if cfg.run.objective == "rpt" and (tokenizer is None or tokenizer.eos_id is None):
        raise UserError("run.objective=rpt needs the model directory's tokenizer (its EOS ends completions) "
                        "to compile")
    return dataclasses.replace(cfg, model=model, rollout=rollout), tokenizer, source
