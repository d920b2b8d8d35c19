"""User-facing errors.

Anything a user can cause (bad path, bad config, corrupt file) raises `UserError`; the CLI
prints its message as one line and exits non-zero instead of showing a traceback.
"""

import json
import os
from typing import Iterator


class UserError(Exception):
    """An error caused by user input; its message is shown as a single line."""


def need(cond: bool, message: str) -> None:
    """Raise `UserError(message)` unless `cond`: the one shape of every config check."""
    if not cond:
        raise UserError(message)


def one_line(message: object) -> str:
    """Collapse a message to one line (library errors are often multi-line)."""
    text = " ".join(str(message).split())
    return text if len(text) <= 400 else text[:397] + "..."


def read_json(path: str, missing_hint: str) -> dict:
    """Parse a JSON file the user pointed us at; absent or malformed → UserError."""
    if not os.path.isfile(path):
        raise UserError(f"{path} not found: {missing_hint}")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"cannot parse {path}: {err}") from None


def read_text_file(path: str) -> str:
    """The file decoded as strict UTF-8 (a BOM is dropped); bad bytes are a user error."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise UserError(
            f"{path}: undecodable bytes {raw[err.start:err.end]!r} at byte {err.start} "
            f"(line {line}); files must be UTF-8"
        ) from None


def jsonl_records(path: str) -> Iterator[tuple[int, object]]:
    """`(line number, value)` of every non-blank line of a JSONL file; a bad line is a UserError."""
    for number, line in enumerate(read_text_file(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{number}: not JSON ({err.msg})") from None
