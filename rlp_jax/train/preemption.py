"""SIGTERM as a request to stop cleanly: the loop saves the current step and returns (exit 0)."""

from __future__ import annotations

import signal


class Preemption:
    """Remembers a SIGTERM; `requested()` agrees across processes (any host preempted)."""

    def __init__(self):
        self.flag = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.flag = True

    def requested(self) -> bool:
        import jax

        if jax.process_count() == 1:
            return self.flag
        import numpy as np
        from jax.experimental import multihost_utils

        return bool(np.any(multihost_utils.process_allgather(np.array(self.flag))))

    def restore(self) -> None:
        signal.signal(signal.SIGTERM, self._previous)
