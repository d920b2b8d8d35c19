"""One writer per run directory, and nothing in it changes before the new config is
validated: the run-directory lock (two real trainings, stale locks of dead processes,
holders on other hosts, heartbeats), refused resumes that leave every file byte-identical,
and unusable run directories (a file, a path under a file, read-only) refused in one line
before anything is compiled."""

import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from rlp_jax import cli
from rlp_jax.errors import UserError
from rlp_jax.train import config, resume, run_lock
from rlp_jax.train import loop as train_loop
from train_helpers import REPO, TINY, env, metrics, run_train, train_cmd

NTP = TINY + ["run.objective=ntp"]  # the cheapest step to compile


def _tree(run_dir) -> dict:
    """Every file under `run_dir` (relative path → content hash) and every directory."""
    out = {}
    for root, dirs, files in os.walk(run_dir):
        for name in dirs:
            out[os.path.relpath(os.path.join(root, name), run_dir) + "/"] = ""
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                out[os.path.relpath(os.path.join(root, name), run_dir)] = hashlib.sha256(f.read()).hexdigest()
    return out


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _last_step(run_dir) -> int:
    try:
        return metrics(run_dir)[-1]["step"]
    except (OSError, ValueError, IndexError):  # not there yet, or being written
        return 0


def _one_line(err: str, *fragments) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("rlp-jax: error:"), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 2-step run (checkpoints 1 and 2), started over the stale lock of a dead process."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    run_dir.mkdir()
    dead = _dead_pid()
    (run_dir / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead,
                                               "machine": run_lock._machine(), "started": "earlier"}))
    done = run_train(NTP + [f"run.run_dir={run_dir}", "run.steps=2", "run.checkpoint_every=1"])
    assert done.returncode == 0, done.stderr[-2000:]
    return run_dir, done, dead


@pytest.fixture
def run_copy(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained[0], copy)
    return copy


# ------------------------------------------------------------------------ the lock, for real


def test_a_stale_lock_of_a_dead_process_is_recovered_and_released_at_the_end(trained):
    run_dir, done, dead = trained
    notices = [line for line in done.stderr.splitlines() if "stale lock" in line]
    assert len(notices) == 1 and f"pid {dead}" in notices[0] and "no longer running" in notices[0], done.stderr
    assert [r["step"] for r in metrics(run_dir)] == [1, 2]
    assert not (run_dir / ".lock").exists()
    assert "resolved config:" in done.stdout and "model:" not in done.stdout  # a path, not 110 lines


def test_a_second_training_on_a_held_run_directory_is_refused(run_copy):
    first = subprocess.Popen(train_cmd(*NTP, f"run.run_dir={run_copy}", "run.steps=400", "run.sleep_per_step=0.2"),
                             env=env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.time() + 240
        while _last_step(run_copy) < 3:
            assert first.poll() is None and time.time() < end, first.communicate()[1][-2000:]
            time.sleep(0.1)
        second = run_train(NTP + [f"run.run_dir={run_copy}", "run.steps=400"])
        assert second.returncode == 2
        _one_line(second.stderr, "in use by another training", f"host {socket.gethostname()}", f"pid {first.pid}",
                  "another run.run_dir")
        first.send_signal(signal.SIGTERM)  # the preemption path releases the lock too
        out, err = first.communicate(timeout=240)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0 and "SIGTERM: saved checkpoint" in out, err[-2000:]
    assert not (run_copy / ".lock").exists()
    steps = [r["step"] for r in metrics(run_copy)]
    assert steps == list(range(1, steps[-1] + 1)) and steps[-1] < 400  # one history, one writer


def test_sigterm_before_the_training_loop_still_releases_the_lock(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(*NTP, f"run.run_dir={run_dir}", "run.steps=400"), env=env(), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("resolved config:")  # the lock is held from here on
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (0, 128 + signal.SIGTERM)  # 0: the loop's handler had taken over
    assert not (run_dir / ".lock").exists()


# ------------------------------------------------------------------------ the lock, in-process


def _holder(run_dir, **fields):
    holder = {"host": "elsewhere", "pid": 1, "machine": "elsewhere|boot|pid:[1]", "started": "then",
              "token": "theirs"}
    holder.update(fields)
    (run_dir / ".lock").write_text(json.dumps(holder))
    return run_dir / ".lock"


def test_a_live_holder_is_named_and_a_released_lock_is_gone(tmp_path, capsys):
    with run_lock.acquire(str(tmp_path)) as lock:
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
        with pytest.raises(UserError, match=rf"in use by another training \(host {socket.gethostname()}, "
                                            rf"pid {os.getpid()}, since "):
            run_lock.acquire(str(tmp_path))
        assert (tmp_path / ".lock").exists()  # the refused one left the holder's lock alone
    assert not (tmp_path / ".lock").exists()
    lock.release()  # idempotent
    fresh = tmp_path / "new" / "run"
    run_lock.acquire(str(fresh)).release()
    assert not fresh.exists()  # a directory the lock created and nothing else used is removed again
    assert capsys.readouterr().err == ""


def test_other_hosts_are_judged_by_heartbeat_and_this_host_by_pid(tmp_path, capsys):
    path = _holder(tmp_path)  # another host, fresh heartbeat: live
    with pytest.raises(UserError, match="host elsewhere, pid 1"):
        run_lock.acquire(str(tmp_path))
    old = time.time() - run_lock.STALE_S - 60
    os.utime(path, (old, old))  # no heartbeat for 11 min: stale
    run_lock.acquire(str(tmp_path)).release()
    assert "no heartbeat for 11 min" in capsys.readouterr().err
    # An empty lock file with a fresh time is one being written this instant: live.
    (tmp_path / ".lock").write_text("")
    with pytest.raises(UserError, match="another process"):
        run_lock.acquire(str(tmp_path))
    # ... but one left empty for longer than a write takes never blocks: its writer died.
    old = time.time() - run_lock.UNREADABLE_S - 5
    os.utime(tmp_path / ".lock", (old, old))
    run_lock.acquire(str(tmp_path)).release()
    assert "unreadable lock file" in capsys.readouterr().err


def test_a_reused_pid_on_this_host_is_told_apart_by_its_start_time(tmp_path, capsys):
    if not run_lock._pid_start(os.getpid()):
        pytest.skip("no /proc/PID/stat here: a process's start time cannot be read")
    # This host, a running pid whose start time is not the recorded one: a reused pid, stale.
    _holder(tmp_path, host=socket.gethostname(), machine=run_lock._machine(), pid=os.getpid(), pid_start="1")
    run_lock.acquire(str(tmp_path)).release()
    assert "no longer running" in capsys.readouterr().err


def test_a_lock_whose_write_fails_is_not_left_behind(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    run_dir = tmp_path / "run"
    with pytest.raises(UserError, match=r"cannot write there \(No space left on device\)$"):
        run_lock.acquire(str(run_dir))
    assert not run_dir.exists()  # no 0-byte .lock refusing the rerun, no empty run directory
    monkeypatch.undo()
    run_lock.acquire(str(run_dir)).release()  # space freed: the rerun starts at once


def _eventually(condition, timeout_s: float = 20.0) -> bool:
    """Poll `condition` (a loaded CI machine may run a heartbeat thread late)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_takeover_never_removes_a_lock_other_than_the_stale_one(tmp_path, capsys):
    path = _holder(tmp_path, token="new")  # a live holder's lock, there since the stale one was judged
    stale = {"host": "elsewhere", "pid": 1, "token": "old", "_text": json.dumps({"token": "old"})}
    run_lock._take_over(str(path), stale, "no heartbeat for 11 min")
    assert json.loads(path.read_text())["token"] == "new"
    assert os.listdir(tmp_path) == [".lock"] and capsys.readouterr().err == ""


def test_the_heartbeat_touches_the_lock_and_a_lost_lock_stops_the_next_save(tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(run_lock, "HEARTBEAT_S", 0.05)
    lock = run_lock.acquire(str(tmp_path))
    try:
        os.utime(lock.path, (0, 0))
        assert _eventually(lambda: time.time() - os.stat(lock.path).st_mtime < 60)
        run_lock.check(str(tmp_path))  # still ours: saving may go on
        _holder(tmp_path)  # not atomic: the heartbeat may read the file empty, and must not call it lost yet
        assert _eventually(lambda: lock.lost is not None)
        assert lock.lost["host"] == "elsewhere"
        with pytest.raises(UserError, match=r"^lost the run-directory lock .* to host elsewhere, pid 1, since then; "
                                            r"stopped without saving"):
            run_lock.check(str(tmp_path))  # what the loop calls before every checkpoint
    finally:
        lock.release()
    assert capfd.readouterr().err.count("was taken over") == 1
    assert json.loads((tmp_path / ".lock").read_text())["token"] == "theirs"  # not ours to remove
    run_lock.check(str(tmp_path))  # released: nothing held, nothing to check


def test_a_lost_lock_is_seen_before_the_heartbeat_notices(tmp_path):
    with run_lock.acquire(str(tmp_path)) as lock:
        (tmp_path / ".lock").unlink()
        with pytest.raises(UserError, match="to another process; stopped without saving"):
            lock.check()


# ------------------------------------------------------------------------ refused resumes


@pytest.mark.parametrize("change,key,old,new", [
    ("model.d_model=128", "model.d_model", "32", "128"),
    ("data.batch_size=4", "data.batch_size", "8", "4"),
    ("run.objective=rlp", "run.objective", "'ntp'", "'rlp'"),
    ("data.seq_len=32", "data.seq_len", "16", "32"),
])
def test_a_refused_resume_changes_nothing_in_the_run_directory(run_copy, change, key, old, new, monkeypatch, capsys):
    before = _tree(run_copy)
    monkeypatch.setattr(train_loop, "_compile", lambda *a: pytest.fail("compiled before refusing"))
    code = cli.main(["train", *NTP, f"run.run_dir={run_copy}", "run.steps=4", change])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    _one_line(err, f"{key}={old}", f"cannot become {new}", "another run.run_dir", "a resume keeps")
    assert _tree(run_copy) == before


def test_without_checkpoints_any_config_may_start_and_with_unreadable_ones_config_yaml_rules(run_copy, monkeypatch,
                                                                                            capsys):
    metas = sorted(p for p in (run_copy / "checkpoints").rglob("*") if p.is_file() and "meta" in p.parts)
    assert metas
    for meta in metas:  # every checkpoint's meta damaged: config.yaml says which run they are
        meta.write_text("{not json")
    before = _tree(run_copy)
    assert cli.main(["train", *NTP, f"run.run_dir={run_copy}", "data.batch_size=4"]) == 2
    _one_line(capsys.readouterr().err, "config.yaml holds a run with data.batch_size=8")
    assert _tree(run_copy) == before
    # No checkpoint: nothing saved to protect (the crashed start's metrics are cut to step 0).
    shutil.rmtree(run_copy / "checkpoints")
    monkeypatch.setattr(train_loop, "_compile", lambda *a: (_ for _ in ()).throw(UserError("claimed")))
    assert cli.main(["train", *NTP, f"run.run_dir={run_copy}", "data.batch_size=4"]) == 2
    _one_line(capsys.readouterr().err, "claimed")
    assert config.read_yaml(str(run_copy / "config.yaml"))["data"]["batch_size"] == 4


def test_what_a_resume_may_and_may_not_change():
    saved = config.load_config(None, TINY).to_dict()
    same_run = ["run.steps=999", "run.eval_every=5", "run.checkpoint_every=7", "optimizer.learning_rate=1e-5",
                "optimizer.schedule=cosine", "optimizer.decay_steps=10", "rollout.group_size=4", "ema_decay=0.5",
                "rlp.eps_high=0.3", "model.remat=full", "model.dtype=bfloat16", "data.prefetch=0", "mesh.fsdp=1"]
    assert resume.conflict(saved, config.load_config(None, TINY + same_run)) is None
    for change, key in (["run.seed=3", "run.seed"], ["data.seed=3", "data.seed"],
                        ["model.param_dtype=bfloat16", "model.param_dtype"], ["data.num_epochs=1", "data.num_epochs"],
                        ["rlp.kl_beta=0.1", "rlp.kl_beta"], ["optimizer.grad_clip=0", "optimizer.grad_clip"]):
        assert resume.conflict(saved, config.load_config(None, TINY + [change]))[0] == key, change
    assert resume.conflict(saved, config.load_config(None, TINY).replace(init_from="/m"))[0] == "init_from"
    assert resume.conflict(saved, config.load_config(None, TINY + ["rlp.kl_beta=0.0", "optimizer.grad_clip=2"])) is None


# ------------------------------------------------------------------------ unusable run directories


def test_a_file_or_a_path_under_a_file_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train_loop, "_resolve", lambda *a: pytest.fail("resolved before refusing"))
    (tmp_path / "f").write_text("x")
    for run_dir, fragment in ((tmp_path / "f", "is a file"), (tmp_path / "f" / "run", "is a file")):
        assert cli.main(["train", *NTP, f"run.run_dir={run_dir}"]) == 2
        _one_line(capsys.readouterr().err, str(run_dir), fragment, "another run.run_dir")
    assert (tmp_path / "f").read_text() == "x"


def _read_only_prefix(directory) -> list:
    """A command prefix under which `directory` cannot be written: its mode as a normal user,
    a read-only bind mount (a private mount namespace) as root, where modes do not bind."""
    if os.geteuid() != 0:
        os.chmod(directory, 0o555)
        return []
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    prefix = ["unshare", "-m", "sh", "-c", script, str(directory)]
    if not shutil.which("unshare") or subprocess.run(prefix + ["true"], capture_output=True).returncode != 0:
        pytest.skip("running as root without mount namespaces: no way to make a directory read-only")
    return prefix


@pytest.mark.parametrize("inside", [False, True], ids=["run_dir", "parent"])
def test_a_read_only_run_directory_is_refused_in_one_line(tmp_path, inside):
    ro = tmp_path / "ro"
    ro.mkdir()
    run_dir = ro / "run" if inside else ro
    prefix = _read_only_prefix(ro)
    try:
        done = subprocess.run(prefix + train_cmd(*NTP, f"run.run_dir={run_dir}"), env=env(), cwd=REPO,
                              capture_output=True, text=True, timeout=300)
    finally:
        os.chmod(ro, 0o755)
    assert done.returncode == 2
    _one_line(done.stderr, str(run_dir), "read-only", "writable run.run_dir")
    assert os.listdir(ro) == []
