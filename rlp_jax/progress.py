"""Progress bars for the long commands (eval, bench, convert, data prepare, ...), and the
noise the CLI silences, so that nobody waits on a silent terminal and no log gets garbage.

A bar is a tqdm bar on stderr, drawn only for a person watching: when stderr is a terminal
and `--quiet` was not given. Pipes, log files and tests (which hold error output to exactly
one line) never see one; there the bar object still exists but draws nothing.
"""

from __future__ import annotations

import sys
import weakref

_quiet = False
_bars = weakref.WeakSet()  # every bar made, so an error can end their lines first


def set_quiet(quiet: bool) -> None:
    """`--quiet`: no bars for the rest of this process."""
    global _quiet
    _quiet = bool(quiet)


def enabled() -> bool:
    """Whether bars are drawn now: stderr is a terminal and `--quiet` was not given."""
    if _quiet:
        return False
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def bar(iterable=None, *, desc: str, total: float | None = None, unit: str = "it", **kwargs):
    """A tqdm bar on stderr (disabled unless `enabled()`): iterate it, or `update()` it.

    `set_postfix_str(phase)` names what is running now (a compile, a save); `log(text)`
    prints a line to stdout without tearing the bar.
    """
    from tqdm import tqdm

    made = tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, disable=not enabled(),
                dynamic_ncols=True, **kwargs)
    _bars.add(made)
    return made


def close_all() -> None:
    """End every open bar's line, so that an error printed next starts on its own line."""
    for made in list(_bars):
        made.close()


def log(text: str) -> None:
    """Print a line on stdout above any bar drawn on stderr."""
    from tqdm import tqdm

    tqdm.write(text, file=sys.stdout)


def silence_library_warnings() -> None:
    """Raise absl's threshold to ERROR. Orbax logs its warnings through absl, three on every
    read-only checkpoint manager that eval, export and downstream open ("read_only=True,
    setting save_interval_steps=0", "Given directory is read only"): our own settings echoed
    back, not problems. absl errors still show."""
    try:
        from absl import logging as absl_logging
    except ImportError:  # absl comes with Orbax; without it there is nothing to silence
        return
    absl_logging.set_verbosity(absl_logging.ERROR)
