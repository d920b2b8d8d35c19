"""Where a run's numbers go: `metrics.jsonl` (one JSON object per logged step), TensorBoard
event files (`tb/`, written by tensorboardX, which needs no TensorFlow) and a tqdm bar.

Only process 0 writes. On resume from step s, lines past s (from the interrupted run)
are dropped first, so the file always describes one consistent history.
"""

from __future__ import annotations

import json
import math
import os
import sys

METRICS_FILE = "metrics.jsonl"
TB_DIR = "tb"


def _number(value):
    value = float(value)
    return value if math.isfinite(value) else str(value)


def truncate_after(path: str, step: int) -> None:
    """Keep only lines whose "step" is <= `step`."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= step]
    with open(path, "w") as f:
        f.writelines(lines)


class MetricsLogger:
    """`log(step, metrics, prefix)`; `bar(step, postfix)`; `close()`. A no-op off process 0."""

    def __init__(self, run_dir: str, enabled: bool, start_step: int, total_steps: int, progress: bool = True):
        self.enabled = enabled
        self._file = self._tb = self._bar = None
        if not enabled:
            return
        os.makedirs(run_dir, exist_ok=True)
        path = os.path.join(run_dir, METRICS_FILE)
        truncate_after(path, start_step)
        self._file = open(path, "a")
        try:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(run_dir, TB_DIR), purge_step=start_step + 1)
        except ImportError:
            print("rlp-jax: tensorboardX is not installed; TensorBoard events are not written", file=sys.stderr)
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step",
                             dynamic_ncols=True, file=sys.stderr)

    def log(self, step: int, metrics: dict, prefix: str = "train") -> None:
        if not self.enabled:
            return
        record = {"step": step, **{f"{prefix}/{k}": _number(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, float):
                    self._tb.add_scalar(key, value, step)

    def bar(self, step: int, postfix: dict) -> None:
        if self._bar is not None:
            self._bar.n = step
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)
            self._bar.refresh()

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def close(self) -> None:
        for handle in (self._bar, self._tb, self._file):
            if handle is not None:
                handle.close()
        self._bar = self._tb = self._file = None
