"""What `rlp-jax eval` evaluates: parameters from a model directory or a training run, and
windows from a prepared TFDS dataset or a plain text file."""

from __future__ import annotations

import os

import numpy as np

from rlp_jax.errors import UserError, need_file


def load_params(path: str, which: str = "policy", mesh=None, with_step: bool = False):
    """`(model_cfg, params, tokenizer_path or None, data_dir or None)` from a model dir or a
    run / checkpoint dir (whose resolved config names its tokenizer and data): its newest
    good checkpoint that restores, or the one step directory `path` names (RUN/checkpoints/4).
    With `with_step`, a fifth item: the checkpoint step read (None for a model directory).

    `which` picks the policy θ or the EMA teacher φ of a training checkpoint; a model
    directory (from convert / fetch / export of a run) has only one set.
    """
    from rlp_jax.model.config import MODEL_CONFIG_FILE

    if not os.path.exists(path):
        raise UserError(f"checkpoint not found: {path}")
    if not os.path.isdir(path):
        raise UserError(f"checkpoint {path} is a file; pass a model directory, run directory or checkpoints dir")
    if os.path.isfile(os.path.join(path, MODEL_CONFIG_FILE)):
        from rlp_jax.model.io import load_model

        if which == "ema":
            raise UserError(f"{path} is a model directory: it holds one set of parameters and no EMA "
                            "teacher; drop --params ema (only a training run has one)")

        cfg, params = load_model(path, mesh=mesh)
        return (cfg, params, path, None) + ((None,) if with_step else ())
    from rlp_jax.train import checkpoint
    from rlp_jax.train import config as config_lib

    if not _may_hold_checkpoints(path):
        raise UserError(f"{path} is neither a model directory (no {MODEL_CONFIG_FILE}) nor a run directory "
                        "(no checkpoints)")
    step, meta, cfg, params = checkpoint.load(path, "ema_params" if which == "ema" else "params", mesh=mesh)
    run_cfg = config_lib.from_dict(meta["config"])
    data = run_cfg.data.data if os.path.isdir(run_cfg.data.data) else None
    return (cfg, params, run_cfg.data.tokenizer or None, data) + ((step,) if with_step else ())


def _may_hold_checkpoints(path: str) -> bool:
    """A run dir (checkpoints/), a checkpoints dir (numbered steps) or one step: Orbax decides."""
    names = os.listdir(path)
    return "checkpoints" in names or any(n.isdigit() for n in names) or os.path.basename(
        os.path.normpath(path)).isdigit()


def resolve_tokenizer(explicit: str | None, own: str | None, cfg):
    """`(tokenizer, its path)`: `explicit` (--tokenizer) or the checkpoint's `own` one.

    A tokenizer must fit the embedding (ids ≥ vocab_size have no row), and one given
    explicitly must give the same ids as the checkpoint's own tokenizer when it has one:
    the model was trained on those ids, so another vocabulary of any size yields garbage.
    A model without a tokenizer of its own can only be checked for size.
    """
    from rlp_jax.tokenizer import find_tokenizer, load_tokenizer, same_vocabulary

    path = explicit or own
    if not path or (not explicit and os.path.isdir(path) and find_tokenizer(path) is None):
        raise UserError("no tokenizer in the checkpoint; pass --tokenizer")
    tokenizer = load_tokenizer(path)
    if tokenizer.vocab_size > cfg.vocab_size:
        raise UserError(f"tokenizer has {tokenizer.vocab_size} tokens but the model embeds only {cfg.vocab_size}")
    own_file = find_tokenizer(own)
    if explicit and own_file:
        reference = load_tokenizer(own_file)
        if not same_vocabulary(tokenizer, reference):
            raise UserError(f"--tokenizer {explicit} ({tokenizer.vocab_size} tokens) is not the tokenizer the "
                            f"model was trained with ({own_file}, {reference.vocab_size} tokens): they give "
                            "different ids; drop --tokenizer")
    return tokenizer, path


def run_config(path: str):
    """The resolved training config of a run / checkpoint dir; None for a model directory."""
    from rlp_jax.model.config import MODEL_CONFIG_FILE
    from rlp_jax.train import checkpoint
    from rlp_jax.train import config as config_lib

    if os.path.isfile(os.path.join(path, MODEL_CONFIG_FILE)):
        return None
    return config_lib.from_dict(checkpoint.run_meta(path)["config"])


def base_model(path: str) -> str | None:
    """The model a run started from (its `init_from`), if it is a directory here: the fixed
    base model whose entropy defines difficulty (RPT §4.1); None for a model directory."""
    run_cfg = run_config(path)
    base = run_cfg.init_from if run_cfg is not None else ""
    return base if base and os.path.isdir(base) else None


def text_file_batches(path: str, tokenizer, seq_len: int, batch_size: int, max_batches: int):
    """Consecutive `seq_len`-token windows of one text file, `batch_size` per batch."""
    need_file(path, "text file")
    try:
        with open(path, encoding="utf-8") as f:
            ids = tokenizer.encode(f.read())
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not valid UTF-8: {err}") from None
    if tokenizer.add_bos:
        ids = [tokenizer.bos_id] + ids
    windows = len(ids) // seq_len
    if windows == 0:
        raise UserError(f"{path} has {len(ids)} tokens, fewer than one window of --seq-len {seq_len}")
    tokens = np.asarray(ids[: windows * seq_len], np.int32).reshape(windows, seq_len)
    for start in range(0, min(windows, batch_size * max_batches), batch_size):
        chunk = tokens[start:start + batch_size]
        yield {"tokens": chunk, "segment_ids": np.ones_like(chunk),
               "positions": np.broadcast_to(np.arange(seq_len, dtype=np.int32), chunk.shape)}


def dataset_batches(data_dir: str, tokenizer_path: str, split: str, seq_len: int, batch_size: int,
                    max_batches: int):
    """Batches of a prepared dataset, in a fixed order (no shuffle, one epoch)."""
    from rlp_jax.data import DataConfig, make_iterator

    config = DataConfig(data=data_dir, tokenizer=tokenizer_path, split=split, seq_len=seq_len,
                        batch_size=batch_size, shuffle=False, num_epochs=1, prefetch=0)
    iterator = make_iterator(config, 0, 1)
    try:
        for _, batch in zip(range(max_batches), iterator):
            yield batch
    finally:
        close = getattr(iterator, "close", None)
        if close:
            close()
