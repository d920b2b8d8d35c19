"""Turn a loaded `TrainConfig` into a runnable one: expand paths, read the architecture
from `init_from`, prepare data and tokenizer, fill the thought markers, and check what
needs files (vocabulary vs embedding, markers in vocabulary, thought length vs context).

The returned config is the *resolved* one: it is saved as `config.yaml` and
stored in every checkpoint, so a run directory alone says exactly what ran.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from rlp_jax.data.builtin import BUILTINS
from rlp_jax.train import data as train_data
from rlp_jax.train.config import TrainConfig, dump_yaml
from rlp_jax.errors import UserError
from rlp_jax.model.config import ModelConfig
from rlp_jax.model.presets import architecture

# What makes two models the same shape (the weights' layout), as opposed to settings.
SHAPE_KEYS = ("family", "vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "mlp_dim",
              "tie_embeddings", "qk_norm")


def expand(path: str) -> str:
    if not path or "://" in path or path.startswith(("builtin:", train_data.SYNTHETIC)) or path == "auto":
        return path
    return os.path.abspath(os.path.expanduser(os.path.expandvars(path)))


def _model_from(cfg: TrainConfig) -> ModelConfig:
    if not cfg.init_from:
        return cfg.model
    if not os.path.isdir(cfg.init_from):
        raise UserError(f"init_from: model directory not found: {cfg.init_from} "
                        f"(create one with `rlp-jax fetch` or `rlp-jax convert`)")
    loaded = ModelConfig.load(cfg.init_from)
    if cfg.architecture:
        named = architecture(cfg.architecture)
        differ = [k for k in SHAPE_KEYS if getattr(loaded, k) != getattr(named, k)]
        if differ:
            raise UserError(f"init_from's model is not architecture {cfg.architecture}: {differ[0]} is "
                            f"{getattr(loaded, differ[0])}, not {getattr(named, differ[0])}")
    return loaded.replace(**{k: getattr(cfg.model, k) for k in cfg.model_keys_set})


def resolve(cfg: TrainConfig):
    """`(resolved cfg, tokenizer or None)`; raises a one-line UserError on any mistake."""
    from rlp_jax.tokenizer import load_tokenizer

    run = dataclasses.replace(cfg.run, run_dir=expand(cfg.run.run_dir),
                              checkpoint_dir=expand(cfg.run.checkpoint_dir))
    cfg = cfg.replace(init_from=expand(cfg.init_from), run=run)
    model_cfg = _model_from(cfg)
    data = dataclasses.replace(cfg.data, data=expand(cfg.data.data), tokenizer=expand(cfg.data.tokenizer))

    data = dataclasses.replace(data, data=_prepared(data.data, "data.data", cfg.prepare))
    warmup = cfg.warmup
    if warmup.steps and warmup.data:
        warmup = dataclasses.replace(warmup, data=_prepared(expand(warmup.data), "warmup.data", cfg.prepare))
    cfg = cfg.replace(warmup=warmup)

    tokenizer = None
    if data.tokenizer in ("", "auto") and cfg.init_from:
        data = dataclasses.replace(data, tokenizer=cfg.init_from)
    elif data.tokenizer == "auto" and data.data != train_data.SYNTHETIC:
        # trained on the warm-up's corpus where there is one: it has every word either phase reads
        corpus = warmup.data if warmup.steps and warmup.data else data.data
        data = dataclasses.replace(data, tokenizer=train_data.auto_tokenizer(corpus, model_cfg.vocab_size,
                                                                             cfg.prepare))
    if data.tokenizer not in ("", "auto"):
        tokenizer = load_tokenizer(data.tokenizer)
        if tokenizer.vocab_size > model_cfg.vocab_size:
            raise UserError(f"tokenizer vocabulary ({tokenizer.vocab_size}) is larger than model.vocab_size "
                            f"({model_cfg.vocab_size})")
    elif data.data != train_data.SYNTHETIC:
        raise UserError("data.tokenizer is required (a tokenizer file or directory, or 'auto')")

    rollout = cfg.rollout.with_markers(tokenizer) if tokenizer is not None else cfg.rollout
    if cfg.run.objective in ("rlp", "rpt"):
        rollout = rollout.resolve_thought_len(data.seq_len, model_cfg.max_seq_len)
        rollout.check(data.seq_len, model_cfg.vocab_size, model_cfg.max_seq_len)
        warning = rollout.short_thought_warning(model_cfg.param_count())
        if warning:
            print(warning, file=sys.stderr)
    cfg = cfg.replace(model=model_cfg, data=data, rollout=rollout)
    if cfg.run.objective == "rpt" and (tokenizer is None or tokenizer.eos_id is None):
        raise UserError("run.objective=rpt needs a tokenizer with an end-of-sequence token (completions end there)")
    elif data.seq_len > model_cfg.max_seq_len:
        raise UserError(f"data.seq_len ({data.seq_len}) exceeds model.max_seq_len ({model_cfg.max_seq_len})")
    return cfg, tokenizer


def _prepared(path: str, key: str, prepare_cfg) -> str:
    """A data path made concrete: a built-in corpus prepared into the cache, else it must exist."""
    if path.startswith("builtin:"):
        return train_data.prepare_builtin(path, prepare_cfg)
    if path != train_data.SYNTHETIC and not os.path.exists(path):
        raise UserError(f"{key} not found: {path} (prepare one with `rlp-jax data prepare`, "
                        f"or use builtin:NAME ({', '.join(BUILTINS)}) / synthetic)")
    return path


def write_config(cfg: TrainConfig) -> str:
    """Write the resolved config as `RUN_DIR/config.yaml` (whole or not at all); its path."""
    path = os.path.join(cfg.run.run_dir, "config.yaml")
    partial = path + ".partial"
    try:
        with open(partial, "w") as f:
            f.write(dump_yaml(cfg))
        os.replace(partial, path)
    except OSError as err:
        if os.path.exists(partial):
            os.unlink(partial)
        raise UserError(f"cannot write {path}: {err.strerror or err}") from None
    return path


def check_mesh(cfg: TrainConfig, mesh, process_count: int) -> None:
    """The global batch must split over processes and over the data-parallel devices."""
    train_data.local_batch_size(cfg.data.batch_size, process_count)
    parallel = mesh.shape["data"] * mesh.shape["fsdp"]
    if cfg.data.batch_size % parallel:
        raise UserError(f"data.batch_size ({cfg.data.batch_size}) must divide by the {parallel} data-parallel "
                        f"devices (mesh.data × mesh.fsdp)")


def initial_params(cfg: TrainConfig, mesh, param_shardings):
    """Parameters from the warm-up run's final checkpoint (`rlp_jax.train.warmup`), else from
    `init_from` (restored straight onto the mesh), else a seeded random init."""
    import jax

    from rlp_jax.model import transformer as model
    from rlp_jax.model.io import load_model

    if cfg.warmup.steps:
        from rlp_jax.train.checkpoint import restore_params
        from rlp_jax.train.warmup import warmup_dir

        _, params = restore_params(warmup_dir(cfg), "params", mesh=mesh)
        return jax.tree.map(lambda p, s: jax.device_put(p, s), params, param_shardings)
    if cfg.init_from:
        _, params = load_model(cfg.init_from, mesh=mesh, dtype=cfg.model.param_dtype)
        return params
    init = jax.jit(lambda key: model.init_params(cfg.model, key), out_shardings=param_shardings)
    return init(jax.random.key(cfg.run.seed))


def proxy_model(cfg: TrainConfig, mesh, param_shardings):
    """RPT's fixed proxy `(params, model_cfg)`: the model directory `rpt.proxy`, or else the
    params at step 0 (`init_from` or the seeded init), also when a run resumes."""
    if cfg.rpt.proxy:
        from rlp_jax.model.io import load_model

        path = expand(cfg.rpt.proxy)
        if not os.path.isdir(path):
            raise UserError(f"rpt.proxy: model directory not found: {path}")
        proxy_cfg, params = load_model(path, mesh=mesh, dtype=cfg.model.param_dtype)
        if proxy_cfg.vocab_size != cfg.model.vocab_size:
            raise UserError(f"rpt.proxy has {proxy_cfg.vocab_size} tokens but the model {cfg.model.vocab_size}")
        return params, proxy_cfg
    return initial_params(cfg, mesh, param_shardings), cfg.model
