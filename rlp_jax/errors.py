"""User-facing errors.

Anything a user can cause (bad path, bad config, corrupt file) raises `UserError`; the CLI
prints its message as one line and exits non-zero instead of showing a traceback.
"""

import contextlib
import json
import math
import os
import shutil
from typing import Iterable, Iterator


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


def need_finite(value: float, flag: str, minimum: float | None = None) -> None:
    """A float option must be a real number (argparse takes "nan" and "inf"), ≥ `minimum`."""
    need(math.isfinite(value), f"{flag} must be a finite number, got {value}")
    if minimum is not None:
        need(value >= minimum, f"{flag} must be >= {minimum:g}, got {value:g}")


def need_file(path: str, what: str) -> None:
    """An input file the user named exists and is a file (a directory is called one)."""
    if os.path.isdir(path):
        raise UserError(f"{what} {path} is a directory, not a file")
    if not os.path.isfile(path):
        raise UserError(f"{what} not found: {path}")


# Outputs. Every command checks its output paths before any work (a benchmark, a download,
# an evaluation must not run only to fail on where it writes), and never overwrites an
# existing output unless the user passed --force.

def check_creatable(path: str, flag: str) -> None:
    """`path` is, or can be created as, an entry of a writable directory: its nearest
    existing ancestor (itself, when it is an existing directory) is a writable directory."""
    target = os.path.abspath(path)
    probe = target if os.path.isdir(target) else os.path.dirname(target)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    where = f"{flag} {path}" if probe == target else f"cannot create {flag} {path}: {probe}"
    if not os.path.isdir(probe):
        raise UserError(f"{where} is a file, not a directory; choose another {flag}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"{where} is read-only; choose a writable {flag}")


def check_output_file(path: str, force: bool, flag: str = "--out") -> None:
    """Refuse, before any work, an output file that is a directory, cannot be created, or
    exists (unless `force`)."""
    if os.path.isdir(path):
        raise UserError(f"{flag} {path} is a directory; name a file")
    if os.path.lexists(path):
        need(force, f"{flag} {path} already exists; pass --force to overwrite it")
        need(os.access(path, os.W_OK), f"{flag} {path} is not writable")
    else:
        check_creatable(path, flag)


def check_output_dir(path: str, force: bool, produces: Iterable[str], flag: str = "--out") -> None:
    """Refuse, before any work, an output directory that is a file, cannot be created, or
    already holds one of the entries the command `produces` (unless `force`)."""
    if not os.path.exists(path):
        check_creatable(path, flag)
        return
    if not os.path.isdir(path):
        raise UserError(f"{flag} {path} is a file, not a directory")
    held = [name for name in produces if os.path.lexists(os.path.join(path, name))]
    if held and not force:
        raise UserError(f"{flag} {path} already holds {', '.join(held)}; pass --force to overwrite "
                        "or choose another directory")
    need(os.access(path, os.W_OK | os.X_OK), f"{flag} {path} is not writable")


def remove_outputs(path: str, names: Iterable[str]) -> None:
    """With --force: drop the entries a command is about to rewrite, so no stale file of an
    older output (say a tokenizer.json beside a new tokenizer.model) survives beside the new."""
    for name in names:
        target = os.path.join(path, name)
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        elif os.path.lexists(target):
            os.remove(target)


@contextlib.contextmanager
def writing(path: str):
    """Turn a file-system failure while writing `path` (full disk, permissions) into one line
    naming it; a flush at close raises OSError without a file name."""
    try:
        yield
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror or err}") from None


def write_output(path: str, text: str) -> None:
    """Write a text output file, a failure named by its path."""
    with writing(path), open(path, "w") as f:
        f.write(text)


def os_error_line(err: OSError) -> str:
    """One line for an OSError that escaped to the CLI, naming its path where it has one."""
    names = " -> ".join(str(n) for n in (err.filename, err.filename2) if n)
    reason = err.strerror or one_line(err)
    return f"{names}: {reason}" if names else f"file system error: {reason}"


def read_json(path: str, missing_hint: str) -> dict:
    """Parse a JSON file the user pointed us at; absent or malformed → UserError."""
    if os.path.isdir(path):
        raise UserError(f"{path} is a directory, not a file: {missing_hint}")
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
