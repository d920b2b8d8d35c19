"""One writer per run directory: `RUN_DIR/.lock`, held by process 0 of a training job.

Two trainings on one directory would interleave `metrics.jsonl`, TensorBoard files and
checkpoint rotation. The lock is created atomically (`O_CREAT | O_EXCL`) before anything
else in the directory is written; it names its holder (host, pid, start time), and a
background thread touches it every `HEARTBEAT_S` seconds so that a holder on another host
(run directories may be on shared storage) can be told from a dead one by the file's age.

A lock is stale, and is taken over with a one-line notice, when its holder is on this
machine and no longer running (same host, pid namespace and boot; a reused pid is told
apart by its start time), or when it is on another machine and its heartbeat is older
than `STALE_S`. A live holder ends a second training with a one-line error naming it.
The lock is released on every exit that runs Python's `finally` blocks: normal end,
errors, SIGTERM (preemption, or before the loop has installed its own handler); after a
SIGKILL or a crash of the machine the next start finds it stale.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import uuid

from rlp_jax.errors import UserError

LOCK_FILE = ".lock"
HEARTBEAT_S = 30.0
STALE_S = 600.0


def check_writable(run_dir: str) -> None:
    """A one-line UserError unless `run_dir` is (or can be created as) a writable directory.

    Cheap and side-effect free, so a bad `run.run_dir` fails before data preparation and
    compilation; `acquire` still turns any later filesystem error into one line."""
    path = os.path.abspath(run_dir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"run.run_dir {run_dir} is a file, not a directory; choose another run.run_dir")
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    if not os.path.isdir(path):
        raise UserError(f"run.run_dir {run_dir}: {path} is a file, not a directory; choose another run.run_dir")
    if not os.access(path, os.W_OK | os.X_OK):
        why = "is read-only" if path == os.path.abspath(run_dir) else f"cannot be created: {path} is read-only"
        raise UserError(f"run.run_dir {run_dir} {why}; choose a writable run.run_dir")


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _token(text: str):
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value.get("token") if isinstance(value, dict) else None


def _machine() -> str:
    """This kernel and pid namespace: pids are only comparable within one."""
    boot = _read("/proc/sys/kernel/random/boot_id").strip()
    try:
        pidns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pidns = ""
    return f"{socket.gethostname()}|{boot}|{pidns}"


def _pid_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    stat = _read(f"/proc/{pid}/stat")
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else ""


def _alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    return not start or not _pid_start(pid) or _pid_start(pid) == start


def _describe(holder: dict) -> str:
    return f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, since {holder.get('started', '?')}"


def _stale_reason(holder: dict, age: float) -> str | None:
    """Why the lock `holder` (heartbeat `age` seconds ago) is stale, or None if it is live."""
    pid = holder.get("pid")
    if holder.get("machine") == _machine() and isinstance(pid, int):
        return None if _alive(pid, holder.get("pid_start", "")) else "its process is no longer running"
    if age > STALE_S:
        return f"no heartbeat for {age / 60:.0f} min"
    return None


class RunLock:
    """The held lock: `release()` (idempotent) or use as a context manager."""

    def __init__(self, run_dir: str, created_dir: bool):
        self.path = os.path.join(run_dir, LOCK_FILE)
        self.run_dir, self.created_dir = run_dir, created_dir
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread = None
        self._previous_sigterm = None

    def _write(self) -> None:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _pid_start(os.getpid()),
                  "machine": _machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "token": self.token}
        with os.fdopen(fd, "w") as f:
            json.dump(holder, f)
            f.flush()
            os.fsync(f.fileno())

    def _beat(self) -> None:
        warned = False
        while not self._stop.wait(HEARTBEAT_S):
            mine = _token(_read(self.path)) == self.token
            try:
                if mine:
                    os.utime(self.path)
            except OSError:
                mine = False
            if not mine and not warned:
                warned = True
                print(f"rlp-jax: warning: the lock {self.path} was taken over; another training may now "
                      f"write to this run directory", file=sys.stderr, flush=True)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="rlp-jax-run-lock", daemon=True)
        self._thread.start()
        if threading.current_thread() is threading.main_thread():
            # Until the loop installs its preemption handler (and after it restores this one),
            # SIGTERM ends the process through `finally` blocks, so the lock is released.
            self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)

    def release(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
        try:
            if _token(_read(self.path)) == self.token:
                os.unlink(self.path)
            if self.created_dir and not os.listdir(self.run_dir):
                os.rmdir(self.run_dir)  # a refused start leaves no empty run directory behind
        except OSError:
            pass

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def _take_over(path: str, holder: dict, why: str) -> bool:
    """Move a stale lock aside; False if another process changed it meanwhile."""
    aside = f"{path}.stale.{uuid.uuid4().hex}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    if _token(_read(aside)) != holder.get("token"):
        try:  # not the lock judged stale: put it back unless a new one is already there
            os.link(aside, path)
        except OSError:
            pass
        os.unlink(aside)
        return False
    os.unlink(aside)
    print(f"rlp-jax: recovered a stale lock on {os.path.dirname(path)} ({_describe(holder)}: {why})",
          file=sys.stderr, flush=True)
    return True


def _holder(path: str) -> tuple[dict, float] | None:
    """The lock's content and heartbeat age, or None if it vanished."""
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(_read(path))
    except ValueError:
        holder = None
    return (holder if isinstance(holder, dict) else {}), age


def acquire(run_dir: str) -> RunLock:
    """Create `run_dir` if needed and hold its lock, or raise a one-line UserError."""
    check_writable(run_dir)
    created = not os.path.isdir(run_dir)
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as err:
        raise UserError(f"run.run_dir {run_dir}: cannot create it ({err.strerror})") from None
    lock = RunLock(run_dir, created)
    for _ in range(5):
        try:
            lock._write()
            lock._start()
            return lock
        except FileExistsError:
            pass
        except OSError as err:
            lock.release()
            raise UserError(f"run.run_dir {run_dir}: cannot write there ({err.strerror or err})") from None
        found = _holder(lock.path)
        if found is None:
            continue
        holder, age = found
        if not holder and age <= STALE_S:  # being written this instant, or unreadable but fresh
            break
        why = _stale_reason(holder, age) if holder else "unreadable lock file"
        if why is None:
            break
        _take_over(lock.path, holder, why)
    found = _holder(lock.path)
    who = _describe(found[0]) if found and found[0] else "another process"
    lock.release()
    raise UserError(f"run.run_dir {run_dir} is in use by another training ({who}; lock {lock.path}); "
                    f"wait for it to end or stop it, or use another run.run_dir")
