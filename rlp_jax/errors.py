"""User-facing errors.

Anything a user can cause (bad path, bad config, corrupt file) raises `UserError`; the CLI
prints its message as one line and exits non-zero instead of showing a traceback.
"""

import json
import os


class UserError(Exception):
    """An error caused by user input; its message is shown as a single line."""


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
