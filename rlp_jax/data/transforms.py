"""Per-element transforms of the Grain pipeline (picklable, so they can run in workers)."""

from __future__ import annotations

import numpy as np

from rlp_jax.data.tfds_io import as_text


class Tokenize:
    """Record -> {"tokens": int32[n]} with optional bos/eos, or None if too short.

    Holds the tokenizer *path* and loads lazily, so the transform pickles cheaply into
    Grain worker processes (sentencepiece processors do not pickle).
    """

    def __init__(self, tokenizer_path: str, text_key: str = "text", add_bos: bool = True,
                 add_eos: bool = True, min_tokens: int = 2):
        self.tokenizer_path, self.text_key = tokenizer_path, text_key
        self.add_bos, self.add_eos, self.min_tokens = add_bos, add_eos, min_tokens
        self._tok = None

    @property
    def tokenizer(self):
        if self._tok is None:
            from rlp_jax.tokenizer import load_tokenizer

            self._tok = load_tokenizer(self.tokenizer_path)
        return self._tok

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_tok"} | {"_tok": None}

    def __call__(self, record):
        tok = self.tokenizer
        ids = tok.encode(as_text(record[self.text_key]))
        if self.add_bos and tok.bos_id is not None:
            ids = [tok.bos_id] + ids
        if self.add_eos and tok.eos_id is not None:
            ids = ids + [tok.eos_id]
        if len(ids) < self.min_tokens:
            return None  # dropped by Grain's filter semantics (to_iter_dataset skips None)
        return {"tokens": np.asarray(ids, dtype=np.int32)}


class SplitLong:
    """Flat-map a tokenized document into chunks of at most `seq_len` tokens (for packing,
    which would otherwise truncate documents longer than a window)."""

    def __init__(self, seq_len: int, max_fan_out: int = 1 << 16):
        self.seq_len, self.max_fan_out = seq_len, max_fan_out

    def flat_map(self, element):
        tokens = element["tokens"]
        return [{"tokens": tokens[i:i + self.seq_len]} for i in range(0, len(tokens), self.seq_len)]


def to_window(element) -> dict[str, np.ndarray]:
    """Grain packing output -> the batch schema the trainer reads."""
    return {
        "tokens": np.asarray(element["tokens"], np.int32),
        "segment_ids": np.asarray(element["tokens_segment_ids"], np.int32),
        "positions": np.asarray(element["tokens_positions"], np.int32),
    }
