"""Write documents as a TFDS dataset in ArrayRecord format, and open TFDS dirs / JSONL
files as random-access sources for Grain.

TFDS gives us a standard, versioned on-disk layout (`DATA_DIR/NAME/1.0.0/`) with split
metadata; ArrayRecord gives O(1) random access, which Grain needs for global shuffling
and exact resume. Only the TF-free parts of TFDS are used (TensorFlow is not a dependency).
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np

from rlp_jax import progress
from rlp_jax.data.corpus import Document, read_jsonl
from rlp_jax.errors import UserError

TEXT_KEY = "text"
SPLITS = ("train", "validation")
DATASET_VERSION = "1.0.0"  # every prepared dataset lives in DATA_DIR/NAME/DATASET_VERSION


def split_documents(docs: list[Document], validation_fraction: float,
                    seed: int = 0) -> dict[str, list[tuple[int, Document]]]:
    """Seeded document-level split; each item keeps its index in the input order."""
    if not 0.0 <= validation_fraction < 1.0:
        raise UserError(f"--validation-fraction must be in [0, 1), got {validation_fraction}")
    order = np.random.default_rng(seed).permutation(len(docs))
    n_val = int(round(validation_fraction * len(docs)))
    if validation_fraction > 0 and len(docs) >= 2:
        n_val = min(max(n_val, 1), len(docs) - 1)
    val = set(order[:n_val].tolist())
    out = {"train": [(i, d) for i, d in enumerate(docs) if i not in val],
           "validation": [(i, d) for i, d in enumerate(docs) if i in val]}
    return {k: v for k, v in out.items() if v}


def check_name(name: str) -> None:
    if not name.isidentifier() or name != name.lower():
        raise UserError(f"dataset name {name!r} must be a lower-case Python identifier")


def write_tfds(name: str, splits: dict[str, list[tuple[int, Document]]], out_dir: str) -> str:
    """Build the TFDS dataset offline; returns its version directory."""
    import tensorflow_datasets as tfds

    check_name(name)

    class LocalText(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version(DATASET_VERSION)

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                description="Local text corpus prepared by rlp-jax (one example per document).",
                features=tfds.features.FeaturesDict(
                    {TEXT_KEY: tfds.features.Text(), "doc_id": np.int64, "source": tfds.features.Text()}
                ),
            )

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(items) for split, items in splits.items()}

        def _generate_examples(self, items):
            for doc_id, doc in items:
                bar.update()
                yield doc_id, {TEXT_KEY: doc.text, "doc_id": doc_id, "source": doc.source}

    LocalText.name = name
    # A one-part module name makes TFDS skip its checksum-file lookup, which would
    # otherwise import the optional `importlib_resources` package.
    LocalText.__module__ = "rlp_jax_local_text"
    tfds.disable_progress_bar()
    builder = LocalText(data_dir=os.path.abspath(out_dir), file_format="array_record")
    if os.path.exists(os.path.join(builder.data_dir, "dataset_info.json")):
        raise UserError(f"{builder.data_dir} already exists; choose another --out or --name")
    bar = progress.bar(desc=f"data prepare {name}", total=sum(map(len, splits.values())), unit="doc")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    bar.close()
    return builder.data_dir


def find_dataset_dir(path: str) -> str:
    """The version dir under `path` (itself, DATA_DIR/NAME or DATA_DIR holding one dataset)."""
    if not os.path.exists(path):
        raise UserError(f"data dir not found: {path}")
    for depth in ("", "*", os.path.join("*", "*")):
        hits = sorted(glob.glob(os.path.join(path, depth, "dataset_info.json")))
        if len(hits) == 1:
            return os.path.dirname(hits[0])
        if len(hits) > 1:
            dirs = ", ".join(os.path.dirname(h) for h in hits)
            raise UserError(f"{path} holds several datasets ({dirs}); point at one of them")
    raise UserError(f"{path} is not a TFDS data dir (no dataset_info.json); run `rlp-jax data prepare`")


def open_source(path: str, split: str = "train", text_key: str = TEXT_KEY):
    """A random-access source (len / getitem) of records holding `text_key`.

    `path` is a TFDS data dir (any TFDS dataset with a text feature, ArrayRecord files)
    or a JSONL file (read into memory: for small corpora and quick experiments).
    """
    if os.path.isfile(path) and path.endswith(".jsonl"):
        docs = [{text_key: d.text} for d in read_jsonl(path, text_key)]
        if not docs:
            raise UserError(f"empty corpus: {path} has no documents")
        return docs
    import tensorflow_datasets as tfds

    version_dir = find_dataset_dir(path)
    try:
        builder = tfds.builder_from_directory(version_dir)
    except Exception as err:  # TFDS raises many types for corrupt metadata
        raise UserError(f"cannot read TFDS dataset {version_dir}: {err}") from None
    if split not in builder.info.splits:
        raise UserError(f"{version_dir} has no split {split!r} (it has {', '.join(builder.info.splits)})")
    if text_key not in builder.info.features:
        raise UserError(f"{version_dir} has no feature {text_key!r}; set the text key")
    try:
        source = builder.as_data_source(split)
    except Exception as err:
        raise UserError(f"cannot open {version_dir} split {split!r}: {err}") from None
    if len(source) == 0:
        raise UserError(f"empty corpus: {version_dir} split {split!r} has no documents")
    return source


def read_texts(path: str, split: str = "train", text_key: str = TEXT_KEY) -> list[str]:
    """Every document text of a split, in stored order (for tokenizer training and checks)."""
    source = open_source(path, split, text_key)
    return [as_text(source[i][text_key])
            for i in progress.bar(range(len(source)), desc=f"reading {split}", unit="doc")]


def as_text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def dataset_summary(version_dir: str) -> dict:
    with open(os.path.join(version_dir, "dataset_info.json")) as f:
        info = json.load(f)
    return {s["name"]: int(sum(int(x) for x in s.get("shardLengths", []))) for s in info.get("splits", [])}
