"""Data for `rlp-jax train`: automatic preparation, per-host iterators, global batches.

  * `data.data: builtin:NAME` is prepared once into the cache (TFDS ArrayRecord);
  * `data.tokenizer: auto` trains a sentencepiece tokenizer with `model.vocab_size` pieces
    on that corpus, once, into the cache;
  * `data.data: synthetic` streams seeded random tokens (benchmarks, multi-host tests): the
    global batch of step s is the same for any process count, so runs compare exactly.
Each process reads its own shard with `global batch / process_count` rows; the rows of all
processes form one global `jax.Array` (`jax.make_array_from_process_local_data`); with the
pipeline's segment ids and positions they form one global `Window` (`global_window`).
Cache writes go to a temporary name first and are renamed, so concurrent or killed
starts never leave a half-written dataset behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile

import numpy as np

from rlp_jax.data.pipeline import local_batch_size
from rlp_jax.errors import UserError

SYNTHETIC = "synthetic"
FIRST_TOKEN = 4  # synthetic tokens avoid the reserved pad/unk/bos/eos ids


def cache_root(prepare_cfg) -> str:
    from rlp_jax.convert.fetch import cache_dir

    return os.path.abspath(os.path.expanduser(os.path.expandvars(prepare_cfg.cache_dir or cache_dir())))


def _build(final: str, prefix: str, write) -> str:
    """`write(tmp)` into a fresh temporary directory, then publish it as `final`."""
    if os.path.isdir(final):
        return final
    os.makedirs(os.path.dirname(final), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=prefix, dir=os.path.dirname(final))
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _publish(tmp, final)
    return final


def _publish(tmp: str, final: str) -> None:
    """Atomically move a finished temporary directory into place (first writer wins)."""
    try:
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not os.path.isdir(final):
            raise


def prepare_builtin(name: str, prepare_cfg) -> str:
    """The TFDS directory of a built-in corpus, prepared into the cache on first use."""
    from rlp_jax.data import prepare

    short = name.removeprefix("builtin:")
    final = os.path.join(cache_root(prepare_cfg), "data",
                         f"{short}-{prepare_cfg.builtin_docs}-{prepare_cfg.validation_fraction:g}")
    return _build(final, f".{short}-", lambda tmp: prepare(
        short, [name], tmp, validation_fraction=prepare_cfg.validation_fraction,
        builtin_docs=prepare_cfg.builtin_docs))


def auto_tokenizer(data_dir: str, vocab_size: int, prepare_cfg) -> str:
    """A sentencepiece model with `vocab_size` pieces trained on `data_dir`, cached."""
    from rlp_jax.data.sp_train import train_sentencepiece
    from rlp_jax.data.tfds_io import read_texts

    tag = os.path.basename(os.path.normpath(data_dir)) or "data"
    final = os.path.join(cache_root(prepare_cfg), "tokenizers", f"{tag}-{hashlib.sha1(data_dir.encode()).hexdigest()[:8]}-{vocab_size}")
    return _build(final, ".tok-", lambda tmp: train_sentencepiece(read_texts(data_dir, "train"), tmp, vocab_size))


def synthetic_iterator(seed: int, vocab_size: int, seq_len: int, global_batch: int,
                       process_index: int, process_count: int):
    """Checkpointable Grain iterator: row g of the global stream is `rng([seed, g])` tokens."""
    import grain

    local = local_batch_size(global_batch, process_count)

    def row(k):
        step, j = divmod(int(k), local)
        g = step * global_batch + process_index * local + j
        tokens = np.random.default_rng([seed, g]).integers(FIRST_TOKEN, vocab_size, seq_len, dtype=np.int32)
        return {"tokens": tokens}
    return iter(grain.MapDataset.range(1 << 40).map(row).batch(local).to_iter_dataset())


def make_train_iterator(cfg, vocab_size: int, process_index: int, process_count: int, split: str = "train"):
    """This process's iterator of `{"tokens": [B/P, T], ...}` for the train or validation split."""
    data = cfg.data
    if data.data == SYNTHETIC:
        seed = data.seed + (0 if split == "train" else 1_000_003)
        return synthetic_iterator(seed, vocab_size, data.seq_len, data.batch_size, process_index, process_count)
    from rlp_jax.data import make_iterator

    local = dataclasses.replace(data, model_vocab_size=vocab_size, split=split)
    if split != "train":
        local = dataclasses.replace(local, shuffle=False, prefetch=0)
    return make_iterator(local, process_index, process_count)


def global_window(local_batch: dict, mesh, rules=None):
    """This process's batch (tokens, and segment ids and positions where the pipeline packs
    documents) as one global `Window` over the mesh."""
    from rlp_jax.rollout.window import Window, from_batch

    local = from_batch(local_batch)
    return Window(*(global_batch(a, mesh, rules) for a in (local.tokens, local.segment_ids, local.positions)))


def global_batch(local_tokens, mesh, rules=None):
    """One `[B, T]` array over the mesh from every process's `[B/P, T]` rows."""
    import jax

    from rlp_jax.model import sharding

    local_tokens = np.asarray(local_tokens, np.int32)
    shape = (local_tokens.shape[0] * jax.process_count(),) + local_tokens.shape[1:]
    target = sharding.batch_sharding(mesh, 2, rules or sharding.DEFAULT_RULES)
    return jax.make_array_from_process_local_data(target, local_tokens, shape)
