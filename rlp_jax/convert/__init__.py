"""`rlp-jax convert`: import GGUF files and HF safetensors directories as model directories."""

from __future__ import annotations

import os
import time

from rlp_jax import progress
from rlp_jax.errors import UserError, check_output_dir, remove_outputs, writing
from rlp_jax.tokenizer import HF_TOKENIZER_FILE, SENTENCEPIECE_FILE, SPECIAL_TOKENS_FILE

# What a model directory holds (rlp_jax.model.io.save_model), and so what `--force` replaces.
MODEL_DIR_FILES = ("params", "model_config.json", SENTENCEPIECE_FILE, HF_TOKENIZER_FILE, SPECIAL_TOKENS_FILE)


def convert(source: str, out: str, param_dtype: str = "float32", scan_layers: bool = True,
            force: bool = False) -> dict:
    """Convert `gguf:PATH` or `hf:DIR` into an rlp-jax model directory at `out`; an `out`
    already holding a model (or part of one) is replaced only with `force`.

    Returns a summary (model config, parameter count, seconds taken).
    """
    from rlp_jax.convert.layout import params_from_hf, tensor_count
    from rlp_jax.model.io import save_model

    start = time.perf_counter()
    kind, _, path = source.partition(":")
    if not path:
        raise UserError(f"--from must look like gguf:PATH or hf:DIR, got {source!r}")
    path = os.path.expanduser(path)
    check_output_dir(out, force, MODEL_DIR_FILES)
    if kind == "gguf":
        from rlp_jax.convert import gguf_import

        reader = gguf_import.open_gguf(path)
        cfg = gguf_import.gguf_model_config(reader)
        get = gguf_import.gguf_tensor_getter(reader, cfg)
        tokenizer = gguf_import.gguf_tokenizer(reader)
    elif kind == "hf":
        from rlp_jax.convert import hf_import

        if not os.path.isdir(path):
            raise UserError(f"HF model directory {path} is a file, not a directory" if os.path.exists(path)
                            else f"HF model directory not found: {path}")
        cfg = hf_import.hf_model_config(path)
        get = hf_import.hf_tensor_getter(path)
        tokenizer = hf_import.hf_tokenizer(path)
    else:
        raise UserError(f"unknown source kind {kind!r}: use gguf:PATH or hf:DIR")
    cfg = cfg.replace(param_dtype=param_dtype, scan_layers=scan_layers)
    if tokenizer is not None and tokenizer.vocab_size > cfg.vocab_size:
        raise UserError(f"tokenizer has {tokenizer.vocab_size} tokens but the model embeds only {cfg.vocab_size}")
    bar = progress.bar(desc="convert", total=tensor_count(cfg), unit="tensor")
    params = params_from_hf(cfg, get, bar)
    bar.set_postfix_str(f"saving {out}")
    with writing(out):
        if force:
            remove_outputs(out, MODEL_DIR_FILES)
        save_model(out, cfg, params, tokenizer)
    bar.close()
    return {"out": os.path.abspath(out), "config": cfg.to_dict(), "parameters": cfg.param_count(),
            "seconds": round(time.perf_counter() - start, 2)}
