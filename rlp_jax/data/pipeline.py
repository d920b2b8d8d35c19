"""The Grain input pipeline: documents -> host shard -> seeded shuffle -> tokenize ->
pack into T-token windows -> per-host batches -> prefetch.

`make_iterator` returns a Grain `DatasetIterator`; `get_state()` / `set_state()` (or
`grain.checkpoint.CheckpointHandler` inside an Orbax `CheckpointManager`) resume the
stream exactly. Batches are dicts of numpy arrays:
  tokens      int32 [B, T]  (padding = 0, the reserved pad id)
  segment_ids int32 [B, T]  0 = padding, 1.. = document number within the window
  positions   int32 [B, T]  restart at 0 at each document start and at each window start
"""

from __future__ import annotations

import dataclasses

from rlp_jax.data import tfds_io, transforms
from rlp_jax.errors import UserError

PACKING_MODES = ("concat", "pack")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    data: str  # TFDS data dir (from `rlp-jax data prepare` or any TFDS text dataset) or a .jsonl file
    tokenizer: str  # sentencepiece .model / tokenizer.json, or a dir holding one
    split: str = "train"
    seq_len: int = 2048
    batch_size: int = 8  # GLOBAL windows per step; each of P processes reads batch_size / P
    seed: int = 0
    shuffle: bool = True
    packing: str = "concat"  # concat: concatenate-then-split; pack: first-fit, documents split only if > T
    num_epochs: int | None = None  # None = repeat forever
    add_bos: bool = True
    add_eos: bool = True
    min_doc_tokens: int = 2  # shorter documents (incl. bos/eos) are skipped: nothing to predict
    text_key: str = "text"
    pack_bins: int = 16  # first-fit bins: more = less padding, more reordering
    read_threads: int = 2  # threads that read + tokenize
    prefetch: int = 4  # batches buffered ahead by a background thread (0 = none)
    worker_count: int = 0  # Grain worker processes (needs absl flags parsed first)
    model_vocab_size: int | None = None  # checked against the tokenizer when given

    def validate(self) -> "DataConfig":
        if self.packing not in PACKING_MODES:
            raise UserError(f"data.packing must be one of {', '.join(PACKING_MODES)}, got {self.packing!r}")
        for name in ("seq_len", "batch_size", "pack_bins", "read_threads"):
            if getattr(self, name) < 1:
                raise UserError(f"data.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_epochs is not None and self.num_epochs < 1:
            raise UserError(f"data.num_epochs must be >= 1 or None, got {self.num_epochs}")
        if self.min_doc_tokens < 2:
            raise UserError(f"data.min_doc_tokens must be >= 2, got {self.min_doc_tokens}")
        return self


def local_batch_size(global_batch: int, process_count: int) -> int:
    """This process's share of the global batch."""
    if global_batch % process_count:
        raise UserError(f"data.batch_size ({global_batch}, the global batch) must divide by the "
                        f"{process_count} processes")
    return global_batch // process_count


def check_vocab(tokenizer, model_vocab_size: int | None) -> None:
    """Token ids must index the model's embedding table."""
    if model_vocab_size is not None and tokenizer.vocab_size > model_vocab_size:
        raise UserError(
            f"tokenizer vocabulary ({tokenizer.vocab_size}) is larger than the model's embedding "
            f"({model_vocab_size} rows); use the model's own tokenizer or a smaller --vocab-size"
        )


def document_dataset(config: DataConfig, process_index: int, process_count: int):
    """This host's documents as a `grain.MapDataset`: sharded first (disjoint, covering
    shards that stay fixed across epochs), then shuffled with the seed, then repeated."""
    import grain

    if not 0 <= process_index < process_count:
        raise UserError(f"process index {process_index} is outside [0, {process_count})")
    source = tfds_io.open_source(config.data, config.split, config.text_key)
    if len(source) < process_count:
        raise UserError(f"{len(source)} documents cannot be sharded over {process_count} hosts")
    ds = grain.MapDataset.source(source)[process_index::process_count]
    if config.shuffle:
        ds = ds.shuffle(seed=config.seed)
    return ds.repeat(config.num_epochs)


def make_dataset(config: DataConfig, process_index: int | None = None,
                 process_count: int | None = None):
    """The whole pipeline as a `grain.IterDataset` (iterate it, or pass it to a trainer)."""
    import grain
    import grain.experimental as gx

    from rlp_jax.tokenizer import load_tokenizer

    config.validate()
    if process_index is None or process_count is None:
        import jax

        process_index, process_count = jax.process_index(), jax.process_count()
    check_vocab(load_tokenizer(config.tokenizer), config.model_vocab_size)
    tokenize = transforms.Tokenize(config.tokenizer, config.text_key, config.add_bos,
                                   config.add_eos, config.min_doc_tokens)
    ds = document_dataset(config, process_index, process_count).map(tokenize)
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=config.read_threads,
                                              prefetch_buffer_size=max(8, 4 * config.read_threads)))
    length = {"tokens": config.seq_len}
    if config.packing == "concat":
        ds = gx.ConcatThenSplitIterDataset(ds, length_struct=length)
    else:
        ds = gx.FlatMapIterDataset(ds, transforms.SplitLong(config.seq_len))
        ds = gx.FirstFitPackIterDataset(ds, length_struct=length, num_packing_bins=config.pack_bins,
                                        seed=config.seed, shuffle_bins=config.shuffle)
    ds = ds.map(transforms.to_window).batch(local_batch_size(config.batch_size, process_count),
                                                    drop_remainder=True)
    if config.worker_count > 0:
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=config.worker_count))
    if config.prefetch > 0:
        ds = gx.ThreadPrefetchIterDataset(ds, prefetch_buffer_size=config.prefetch)
    return ds


def make_iterator(config: DataConfig, process_index: int | None = None,
                  process_count: int | None = None):
    """A checkpointable iterator over this host's batches (defaults: this JAX process)."""
    return iter(make_dataset(config, process_index, process_count))
