"""Where a run's numbers go: `metrics.jsonl` (one JSON object per logged step), TensorBoard
event files (`tb/`, written by tensorboardX, which needs no TensorFlow), a tqdm bar, and
the curves drawn from `metrics.jsonl` (`plots/training.png` at the end of a run).

Only process 0 writes. On resume from step s, lines past s (from the interrupted run)
are dropped first, so the file always describes one consistent history; a half-written
last line (what a full disk or a kill mid-write leaves) is dropped with a notice, while a
malformed line elsewhere is the user's to fix. A failed write (full disk, read-only
mount) ends the run with one line naming the file. Reading and
plotting live here, beside the writer, so the training loop needs nothing from
`rlp_jax.evaluation` (`rlp-jax report` imports them from here).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys

import numpy as np

from rlp_jax.errors import UserError, jsonl_records, writing
from rlp_jax.progress import bar as progress_bar
from rlp_jax.progress import enabled as progress_enabled

METRICS_FILE = "metrics.jsonl"
TB_DIR = "tb"
PLOTS_DIR = "plots"
TRAINING_PLOT_KEYS = ["train/reward_mean", "train/loss", "eval/info_gain", "eval/acc_think/hard",
                      "eval/acc_no_think_at_thoughts/hard", "eval/nll", "train/tokens_per_s"]


def _number(value):
    value = float(value)
    return value if math.isfinite(value) else str(value)


def truncate_after(path: str, step: int) -> None:
    """Keep only lines whose "step" is <= `step` (a half-written last line is dropped)."""
    if not os.path.exists(path):
        return
    with open(path, "rb") as f:
        raw = f.read().decode("utf-8", errors="replace").splitlines(keepends=True)
    lines = [(number, line) for number, line in enumerate(raw, start=1) if line.strip()]
    kept = []
    for i, (number, line) in enumerate(lines):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if i < len(lines) - 1:
                raise UserError(f"{path}:{number}: not JSON ({err.msg}); fix or remove that line to resume") from None
            print(f"rlp-jax: warning: {path}:{number}: dropped a half-written last line", file=sys.stderr)
            continue
        if not isinstance(record, dict):
            raise UserError(f"{path}:{number}: not a metrics record (a JSON object); fix or remove that line to resume")
        if record.get("step", 0) <= step:
            kept.append(line if line.endswith("\n") else line + "\n")
    temporary = path + ".tmp"  # a failure mid-write leaves the old file whole
    try:
        with open(temporary, "w") as f:
            f.writelines(kept)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


class MetricsLogger:
    """`log(step, metrics, prefix)`; `bar(step, postfix)`; `close()`. A no-op off process 0."""

    def __init__(self, run_dir: str, enabled: bool, start_step: int, total_steps: int, progress: bool = True):
        self.enabled = enabled
        self._file = self._tb = self._bar = None
        self._path = os.path.join(run_dir, METRICS_FILE)
        if not enabled:
            return
        with writing(self._path):
            os.makedirs(run_dir, exist_ok=True)
            truncate_after(self._path, start_step)
            self._file = open(self._path, "a")
        try:
            from tensorboardX import SummaryWriter

            with writing(os.path.join(run_dir, TB_DIR)):
                self._tb = SummaryWriter(os.path.join(run_dir, TB_DIR), purge_step=start_step + 1)
        except ImportError:
            print("rlp-jax: tensorboardX is not installed; TensorBoard events are not written", file=sys.stderr)
        if progress and progress_enabled():  # a terminal, no --quiet
            self._bar = progress_bar(desc="train", total=total_steps, initial=start_step, unit="step")

    def log(self, step: int, metrics: dict, prefix: str = "train") -> None:
        if not self.enabled:
            return
        record = {"step": step, **{f"{prefix}/{k}": _number(v) for k, v in metrics.items()}}
        with writing(self._path):
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
        if self._tb is not None:
            with writing(os.path.join(os.path.dirname(self._path), TB_DIR)):
                for key, value in record.items():
                    if key != "step" and isinstance(value, float):
                        self._tb.add_scalar(key, value, step)

    def text(self, tag: str, text: str, step: int) -> None:
        """TensorBoard text (Markdown), e.g. the run's sample thoughts."""
        if self._tb is not None:
            with writing(os.path.join(os.path.dirname(self._path), TB_DIR)):
                self._tb.add_text(tag, text, step)

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
        handles, self._bar, self._tb, self._file = (self._bar, self._tb, self._file), None, None, None
        failed = None
        for handle in handles:
            try:
                if handle is not None:
                    handle.close()
            except OSError as err:
                failed = failed or err
        if failed is not None:
            with writing(self._path):
                raise failed


def read_metrics(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, METRICS_FILE)
    if not os.path.isfile(path):
        raise UserError(f"{path} not found: is {run_dir} a run directory?")
    return [record for _, record in jsonl_records(path)]


def series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one metric across records that have it."""
    pairs = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
    if not pairs:
        return np.zeros(0), np.zeros(0)
    steps, values = zip(*pairs)
    return np.asarray(steps, np.float64), np.asarray(values, np.float64)


def plot_curves(runs: dict[str, tuple[list[dict], float]], keys: list[str], path: str,
                x_axis: str = "step") -> list[str]:
    """One panel per metric key, one line per run; x is steps or cumulative FLOPs.

    `runs` maps a label to (records, flops_per_step). Returns the keys actually drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = [k for k in keys if any(series(r, k)[0].size for r, _ in runs.values())]
    if not drawn:
        return []
    fig, axes = plt.subplots(len(drawn), 1, figsize=(7, 2.6 * len(drawn)), squeeze=False)
    for ax, key in zip(axes[:, 0], drawn):
        for label, (records, flops_per_step) in runs.items():
            steps, values = series(records, key)
            if steps.size:
                x = steps if x_axis == "step" else steps * flops_per_step
                ax.plot(x, values, marker=".", label=label)
        ax.set_ylabel(key.split("/", 1)[-1], fontsize=8)
        if x_axis == "flops":
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("step" if x_axis == "step" else "training FLOPs (rollouts included)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def write_training_plot(run_dir: str) -> str | None:
    """`plots/training.png` from metrics.jsonl (skipped, with a note, without matplotlib)."""
    try:
        os.makedirs(os.path.join(run_dir, PLOTS_DIR), exist_ok=True)
        path = os.path.join(run_dir, PLOTS_DIR, "training.png")
        records = read_metrics(run_dir)
        drawn = plot_curves({os.path.basename(run_dir): (records, 1.0)}, TRAINING_PLOT_KEYS, path)
        return path if drawn else None
    except ImportError as err:
        print(f"rlp-jax: no plots ({err})", file=sys.stderr)
        return None
