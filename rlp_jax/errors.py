"""User-facing errors.

Anything a user can cause (bad path, bad config, corrupt file) raises `UserError`; the CLI
prints its message as one line and exits non-zero instead of showing a traceback.
"""


class UserError(Exception):
    """An error caused by user input; its message is shown as a single line."""


def one_line(message: object) -> str:
    """Collapse a message to one line (library errors are often multi-line)."""
    text = " ".join(str(message).split())
    return text if len(text) <= 400 else text[:397] + "..."
