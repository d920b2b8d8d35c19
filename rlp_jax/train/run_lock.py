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
SIGKILL or a crash of the machine the next start finds it stale. A lock file that cannot
be read (empty: its writer died between creating and writing it) is stale after
`UNREADABLE_S`; no heartbeat touches it. Takeovers are serialised by an advisory lock on
the run directory (where the file system has one), so a takeover only ever removes the
lock it judged stale, never the live lock of a process that started meanwhile.

A holder whose lock was taken over (its heartbeat finds another holder) stops at its next
checkpoint without saving: the loop calls `check(run_dir)` before every save.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import sys
import threading
import time
import uuid

from rlp_jax import errors
from rlp_jax.errors import UserError

LOCK_FILE = ".lock"
HEARTBEAT_S = 30.0
STALE_S = 600.0
UNREADABLE_S = 60.0  # a holder writes its lock within milliseconds of creating it
_HELD: dict[str, "RunLock"] = {}  # realpath of the run directory → the lock this process holds


def check_writable(run_dir: str) -> None:
    """A one-line UserError unless `run_dir` is (or can be created as) a writable directory.

    Cheap and side-effect free, so a bad `run.run_dir` fails before data preparation and
    compilation; `acquire` still turns any later filesystem error into one line."""
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise UserError(f"run.run_dir {run_dir} is a file, not a directory; choose another run.run_dir")
    errors.check_creatable(run_dir, "run.run_dir")


def check(run_dir: str) -> None:
    """Raise a one-line UserError if this process held `run_dir`'s lock and lost it (a no-op
    where it holds none: other processes of a multi-host job)."""
    lock = _HELD.get(os.path.realpath(run_dir))
    if lock is not None:
        lock.check()


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
        self.lost: dict | None = None  # the holder that took the lock over, once one did

    def _write(self) -> None:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        holder = {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _pid_start(os.getpid()),
                  "machine": _machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "token": self.token}
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(holder, f)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:  # a full disk: O_EXCL made the file ours, so it goes, not a stale lock
            try:
                os.unlink(self.path)
            except OSError:
                pass
            raise

    def _lost_to(self) -> dict | None:
        """The holder that replaced this lock ({} when it is gone or stays unreadable), or None
        if the lock is still ours or cannot be read right now (an I/O hiccup is not a loss).
        A lock that does not parse is read again a moment later: the new holder may be
        between creating its file and writing it."""
        for attempt in range(3):
            try:
                with open(self.path) as f:
                    text = f.read()
            except FileNotFoundError:
                return {}
            except OSError:
                return None
            if _token(text) == self.token:
                return None
            try:
                holder = json.loads(text)
            except ValueError:
                holder = None
            if isinstance(holder, dict):
                return holder
            time.sleep(0.05 * (attempt + 1))
        return {}

    def check(self) -> None:
        """A one-line UserError if the heartbeat (or a look now) finds another holder."""
        if self.lost is None:
            self.lost = self._lost_to()
        if self.lost is not None:
            who = _describe(self.lost) if self.lost else "another process"
            raise UserError(f"lost the run-directory lock {self.path} to {who}; stopped without saving "
                            "(another training took this run directory over)")

    def _beat(self) -> None:
        while self.lost is None and not self._stop.wait(HEARTBEAT_S):
            lost = self._lost_to()
            if lost is None:
                try:
                    os.utime(self.path)
                except FileNotFoundError:
                    lost = {}
                except OSError:
                    pass
            if lost is not None:
                self.lost = lost
                print(f"rlp-jax: warning: the lock {self.path} was taken over; this training stops "
                      "at its next checkpoint without saving", file=sys.stderr, flush=True)

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="rlp-jax-run-lock", daemon=True)
        self._thread.start()
        if threading.current_thread() is threading.main_thread():
            # Until the loop installs its preemption handler (and after it restores this one),
            # SIGTERM ends the process through `finally` blocks, so the lock is released.
            self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        _HELD[os.path.realpath(self.run_dir)] = self

    def release(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if _HELD.get(os.path.realpath(self.run_dir)) is self:
            del _HELD[os.path.realpath(self.run_dir)]
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


class _TakeoverGuard:
    """An advisory lock on the run directory (released by the kernel if its holder dies) that
    serialises takeovers; where the file system has none, takeovers go unguarded."""

    def __init__(self, run_dir: str):
        self.fd = None
        try:
            self.fd = os.open(run_dir, os.O_RDONLY)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the flock


def _take_over(path: str, holder: dict, why: str) -> None:
    """Remove the stale lock `holder` (judged under the guard), unless it changed meanwhile.

    Under the guard no other takeover runs, so only the stale holder itself, coming back to
    life and releasing, lets a new lock appear in between: the moved lock is then not the
    judged one and is put back. Only if yet another start has created a lock in that instant
    is the put-back impossible; that one is left alone, and the moved one's holder finds its
    lock lost at its next checkpoint and stops without saving (never two writers)."""
    aside = f"{path}.stale.{uuid.uuid4().hex}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if _read(aside) != holder["_text"]:
        try:
            os.link(aside, path)
        except OSError:
            pass
        os.unlink(aside)
        return
    os.unlink(aside)
    print(f"rlp-jax: recovered a stale lock on {os.path.dirname(path)} ({_describe(holder)}: {why})",
          file=sys.stderr, flush=True)


def _holder(path: str) -> tuple[dict, float] | None:
    """The lock's content (its raw text under "_text") and heartbeat age, or None if it vanished."""
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return None
    text = _read(path)
    try:
        holder = json.loads(text)
    except ValueError:
        holder = None
    holder = dict(holder) if isinstance(holder, dict) else {}
    holder["_text"] = text
    return holder, age


def _why_stale(path: str) -> tuple[dict, str | None] | None:
    """`(holder, why it is stale or None if live)` of the lock at `path`, or None if none."""
    found = _holder(path)
    if found is None:
        return None
    holder, age = found
    if set(holder) == {"_text"}:  # empty or unreadable: no heartbeat ever touches it
        return holder, (f"unreadable lock file, unchanged for {age:.0f} s" if age > UNREADABLE_S else None)
    return holder, _stale_reason(holder, age)


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
        with _TakeoverGuard(run_dir):
            judged = _why_stale(lock.path)  # judged again under the guard: no other takeover is under way
            if judged is None:
                continue
            holder, why = judged
            if why is None:
                break
            _take_over(lock.path, holder, why)
    found = _holder(lock.path)
    who = _describe(found[0]) if found and set(found[0]) != {"_text"} else "another process"
    lock.release()
    raise UserError(f"run.run_dir {run_dir} is in use by another training ({who}; lock {lock.path}); "
                    f"wait for it to end or stop it, or use another run.run_dir")
