"""`data prepare`: gather documents from files, built-in corpora or existing TFDS dirs and
write them as one TFDS ArrayRecord dataset with train and validation splits."""

from __future__ import annotations

import glob
import math
import os
import shutil

from rlp_jax.data import builtin, corpus, tfds_io
from rlp_jax.errors import UserError, check_output_dir, writing


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
            drop_short: bool = False, text_key: str = "text", builtin_docs: int = 2000,
            force: bool = False) -> str:
    """Build `out_dir/name/1.0.0` and return that directory; an existing one is replaced
    only with `force`."""
    if not inputs:
        raise UserError("no inputs: pass --input FILES_OR_GLOB or --builtin NAME")
    tfds_io.check_name(name)
    dataset_dir = os.path.join(out_dir, name)
    version_dir = os.path.join(dataset_dir, tfds_io.DATASET_VERSION)
    # Before reading any input: the output can be written, and holds no dataset unless --force.
    if os.path.lexists(version_dir) and not force:
        raise UserError(f"{version_dir} already exists; pass --force to replace it, or choose another "
                        "--out or --name")
    check_output_dir(dataset_dir, True, (), "--out")
    docs = gather_documents(inputs, fmt, text_key, builtin_docs, seed)
    docs = corpus.check_documents(docs, min_chars, drop_short)
    if validation_fraction > 0 and len(docs) == 1:
        docs = corpus.cut_document(docs[0], math.ceil(1 / validation_fraction), min_chars)
        if len(docs) == 1:
            raise UserError(f"{docs[0].source} is the only document and too short to cut into a training and "
                            "a validation part; add documents or pass --validation-fraction 0")
    splits = tfds_io.split_documents(docs, validation_fraction, seed)
    with writing(dataset_dir):
        if force:
            shutil.rmtree(version_dir, ignore_errors=True)
        return tfds_io.write_tfds(name, splits, out_dir)
