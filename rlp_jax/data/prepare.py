"""`data prepare`: gather documents from files, built-in corpora or existing TFDS dirs and
write them as one TFDS ArrayRecord dataset with train and validation splits."""

from __future__ import annotations

import glob
import os

from rlp_jax.data import builtin, corpus, tfds_io
from rlp_jax.errors import UserError


def gather_documents(inputs: list[str], fmt: str | None = None, text_key: str = "text",
                     builtin_docs: int = 2000, seed: int = 0) -> list[corpus.Document]:
    """Documents from every input, in order: `builtin:NAME`, a TFDS data dir, or files/globs."""
    docs: list[corpus.Document] = []
    for item in inputs:
        if item.startswith(builtin.BUILTIN_PREFIX):
            docs.extend(builtin.builtin_documents(item, builtin_docs, seed))
        elif os.path.isdir(item) and glob.glob(os.path.join(item, "**", "dataset_info.json"), recursive=True):
            docs.extend(_tfds_documents(item, text_key))
        else:
            docs.extend(corpus.read_documents(corpus.expand_inputs([item]), fmt, text_key))
    return docs


def _tfds_documents(path: str, text_key: str) -> list[corpus.Document]:
    import tensorflow_datasets as tfds

    version_dir = tfds_io.find_dataset_dir(path)
    docs = []
    for split in tfds.builder_from_directory(version_dir).info.splits:
        texts = tfds_io.read_texts(version_dir, split, text_key)
        docs.extend(corpus.Document(t, f"{version_dir}:{split}:{i}") for i, t in enumerate(texts))
    return docs


def prepare(name: str, inputs: list[str], out_dir: str, fmt: str | None = None,
            validation_fraction: float = 0.05, seed: int = 0, min_chars: int = 1,
            drop_short: bool = False, text_key: str = "text", builtin_docs: int = 2000) -> str:
    """Build `out_dir/name/1.0.0` and return that directory."""
    if not inputs:
        raise UserError("no inputs: pass --input FILES_OR_GLOB or --builtin NAME")
    docs = gather_documents(inputs, fmt, text_key, builtin_docs, seed)
    docs = corpus.check_documents(docs, min_chars, drop_short)
    splits = tfds_io.split_documents(docs, validation_fraction, seed)
    return tfds_io.write_tfds(name, splits, out_dir)
