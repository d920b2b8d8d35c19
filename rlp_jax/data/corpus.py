"""Read local text files (plain text, markdown, JSONL) into documents.

Documents are the unit the pipeline keeps intact: a file for `text` and `markdown`,
a line for `jsonl` (a lone document is cut into parts, so that it can still be split). Every problem a user can cause here (no files, undecodable bytes,
malformed JSON, an empty corpus) raises a one-line `UserError` naming the file.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from typing import Iterable, Iterator

from rlp_jax import progress
from rlp_jax.errors import UserError, jsonl_records, read_text_file

FORMATS = ("text", "jsonl", "markdown")
_FORMAT_BY_SUFFIX = {".jsonl": "jsonl", ".md": "markdown", ".markdown": "markdown"}


@dataclasses.dataclass(frozen=True)
class Document:
    text: str
    source: str  # file (and line, for JSONL) it came from: shown in errors and stored


def expand_inputs(inputs: Iterable[str]) -> list[str]:
    """Files named by paths, globs or directories (recursively), sorted for determinism."""
    files: list[str] = []
    for pattern in inputs:
        for item in pattern.split(","):
            item = os.path.expanduser(item.strip())
            if not item:
                continue
            if os.path.isdir(item):
                found = [p for p in glob.glob(os.path.join(item, "**", "*"), recursive=True)
                         if os.path.isfile(p)]
            else:
                found = [p for p in glob.glob(item, recursive=True) if os.path.isfile(p)]
            if not found:
                raise UserError(f"no input files match {item!r}")
            files.extend(sorted(found))
    return list(dict.fromkeys(files))  # de-duplicate, keep order


def guess_format(path: str) -> str:
    return _FORMAT_BY_SUFFIX.get(os.path.splitext(path)[1].lower(), "text")


def clean_markdown(text: str) -> str:
    """Markdown to readable text: drop emphasis markers and hard-break trailing spaces."""
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\*\*(.+?)\*\*", r"\1", text)
    text = re.sub(r"(?<!\w)_(.+?)_(?!\w)", r"\1", text, flags=re.S)
    return text.strip("\n") + "\n"


def read_jsonl(path: str, text_key: str = "text") -> Iterator[Document]:
    """One document per line: an object with `text_key`, or a bare JSON string."""
    for number, record in jsonl_records(path):
        if isinstance(record, dict):
            if text_key not in record:
                raise UserError(f"{path}:{number}: no {text_key!r} field (use --text-key)")
            record = record[text_key]
        if not isinstance(record, str):
            raise UserError(f"{path}:{number}: the text must be a string, got {type(record).__name__}")
        yield Document(record, f"{path}:{number}")


def read_documents(files: Iterable[str], fmt: str | None = None,
                   text_key: str = "text") -> list[Document]:
    """Documents from files; `fmt=None` picks the format from each file's suffix."""
    if fmt is not None and fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    docs: list[Document] = []
    for path in progress.bar(files, desc="reading files", unit="file"):
        kind = fmt or guess_format(path)
        if kind == "jsonl":
            docs.extend(read_jsonl(path, text_key))
        else:
            text = read_text_file(path)
            docs.append(Document(clean_markdown(text) if kind == "markdown" else text, path))
    return docs


def check_documents(docs: list[Document], min_chars: int = 1,
                    drop_short: bool = False) -> list[Document]:
    """Drop blank documents; reject (or drop) ones shorter than `min_chars`; reject empty corpora."""
    kept = [d for d in docs if d.text.strip()]
    short = [d for d in kept if len(d.text) < min_chars]
    if short and not drop_short:
        raise UserError(
            f"{len(short)} document(s) are shorter than the minimum context of {min_chars} "
            f"characters (first: {short[0].source}, {len(short[0].text)} chars); "
            "pass --drop-short to skip them"
        )
    kept = [d for d in kept if len(d.text) >= min_chars]
    if not kept:
        raise UserError(f"empty corpus: no non-blank documents of at least {min_chars} characters")
    return kept


def cut_document(doc: Document, parts: int, min_chars: int = 1) -> list[Document]:
    """`doc` as up to `parts` consecutive documents of similar length, cut at line breaks
    (at spaces when it has too few lines), each at least `min_chars` long; their texts join
    back to the original. A corpus of one document needs this to have a validation split."""
    text = doc.text
    parts = max(1, min(parts, len(text) // max(min_chars, 1)))
    units = text.splitlines(keepends=True)
    if len(units) < parts:
        units = [u for u in re.findall(r"\S*\s*", text) if u]
    pieces, current = [], ""
    for unit in units:
        current += unit
        if len(pieces) < parts - 1 and len(current) >= min_chars and \
                sum(map(len, pieces)) + len(current) >= (len(pieces) + 1) * len(text) / parts:
            pieces.append(current)
            current = ""
    if current:
        if pieces and len(current) < min_chars:
            pieces[-1] += current
        else:
            pieces.append(current)
    if len(pieces) == 1:
        return [doc]
    return [Document(p, f"{doc.source} (part {i + 1} of {len(pieces)})") for i, p in enumerate(pieces)]
