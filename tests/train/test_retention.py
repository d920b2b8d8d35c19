"""In-process checks of what protects a run's checkpoints: the divergence guard of one step,
the held-out judgement, the retention rule (a checkpoint that is not good never counts
toward `keep`, the last good one is never deleted), write errors in one line, the
`metrics.jsonl` repair on resume, and the checkpoint a step directory path names."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlp_jax.errors import UserError
from rlp_jax.train import checkpoint, retention
from rlp_jax.train.metrics import MetricsLogger, truncate_after
from rlp_jax.train.state import TrainState
from rlp_jax.train.step import guard


# ----------------------------------------------------------------------------- the step guard


def _state(scale=1.0):
    params = {"w": jnp.full((4, 4), 0.02 * scale), "norm": jnp.ones((4,))}
    return TrainState(params=params, opt_state={"mu": jnp.zeros((4, 4))}, ema_params=params,
                      step=jnp.zeros((), jnp.int32), rng=jax.random.key(0))


def _inner(factor):
    """A fake step that multiplies the params by `factor` (a finite blow-up for large ones)."""
    def inner(state, window):
        params = jax.tree.map(lambda p: p * factor, state.params)
        new = state.replace(params=params, opt_state={"mu": state.opt_state["mu"] + 1}, ema_params=params,
                            step=state.step + 1)
        return new, {"loss": jnp.float32(0.5), "grad_norm": jnp.float32(0.1)}
    return inner


@pytest.mark.parametrize("factor, diverged", [(1.01, 0), (1e6, 1)])
def test_guard_skips_a_finite_blow_up(factor, diverged):
    state = _state()
    new, metrics = jax.jit(guard(_inner(factor), skip=True, max_update_ratio=1.0))(state, None)
    assert int(metrics["diverged"]) == diverged and int(metrics["nonfinite"]) == 0
    assert float(metrics["update_ratio"]) == pytest.approx(factor - 1, rel=1e-3)
    kept = jax.tree.leaves(state.params if diverged else jax.tree.map(lambda p: p * factor, state.params))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new.params), kept))
    assert int(new.step) == 1  # step and rng advance either way


def test_guard_without_a_bound_only_catches_non_finite():
    _, metrics = jax.jit(guard(_inner(1e6), skip=True))(_state(), None)
    assert int(metrics["diverged"]) == 0
    _, metrics = jax.jit(guard(_inner(jnp.inf), skip=True, max_update_ratio=1.0))(_state(), None)
    assert int(metrics["nonfinite"]) == 1 and int(metrics["diverged"]) == 0


# ----------------------------------------------------------------------------- held-out judgement


def test_heldout_rise_marks_not_good_until_it_recovers():
    meta = {"good": True}
    assert retention.judge_heldout(meta, 5.0, 3, 1.0) is None and meta["best_eval_nll"] == 5.0
    assert retention.judge_heldout(meta, 4.0, 6, 1.0) is None and meta["best_eval_nll"] == 4.0
    assert retention.judge_heldout(meta, 4.9, 9, 1.0) is None and meta["good"]  # within the tolerance
    why = retention.judge_heldout(meta, 5.5, 12, 1.0)
    assert "5.5 at step 12, best 4" in why and meta["good"] is False and meta["bad_reason"] == why
    assert retention.judge_heldout(meta, 4.2, 15, 1.0) is None and meta["good"] and "bad_reason" not in meta
    assert retention.judge_heldout(meta, float("nan"), 18, 1.0) and not meta["good"]
    assert retention.judge_heldout({"good": True}, 99.0, 3, 0.0) is None  # 0 disables


# ----------------------------------------------------------------------------- retention


@pytest.mark.parametrize("good, keep, deleted", [
    ({2: True, 4: True, 6: True, 8: True}, 3, [2]),                      # plain rotation
    ({2: True, 4: True, 6: False, 8: False, 10: False, 12: False}, 3, [6]),  # bad ones never count
    ({2: True, 4: False, 6: False}, 1, [4]),                             # last good survives keep=1
    ({2: True, 4: False, 6: True, 8: True}, 2, [2, 4]),                  # recovered: older bad go
    ({2: False, 4: False}, 1, [2]),                                      # no good one at all
])
def test_retention_rule(good, keep, deleted):
    assert retention.to_delete(good, keep) == deleted
    survivors = {s: g for s, g in good.items() if s not in deleted}
    assert retention.last_good(survivors) == retention.last_good(good)
    assert sum(survivors.values()) == min(keep, sum(good.values()))


class _FakeManager:
    """What `Ledger` uses of an Orbax manager; `fail` makes the next wait raise."""

    directory = "/runs/r/checkpoints"

    def __init__(self):
        self.saved, self.deleted, self.fail, self.closed = [], [], None, False

    def save(self, step, args, force):
        self.saved.append(step)

    def wait_until_finished(self):
        if self.fail:
            err, self.fail = self.fail, None
            raise err

    def delete(self, step):
        self.deleted.append(step)

    def close(self):
        self.closed = True


def test_ledger_counts_only_complete_good_checkpoints(monkeypatch):
    monkeypatch.setattr(checkpoint, "save", lambda manager, step, *a, **k: manager.save(step, None, True))
    manager = _FakeManager()
    ledger = retention.Ledger(manager, {2: True, 4: True}, keep=2)
    ledger.save(6, None, None, {"good": False})  # diverged: does not push 2 or 4 out
    ledger.save(8, None, None, {"good": False})
    ledger.save(10, None, None, {"good": False})
    assert manager.deleted == [] and ledger.last_good() == 4
    ledger.save(12, None, None, {"good": True})  # of the bad ones after 4, the newest 2 are kept
    assert manager.deleted == [6] and ledger.last_good() == 12
    ledger.close()  # 12 is complete: 2 rotates out, and 8, 10 are older than the newest good one
    assert manager.deleted == [6, 2, 8, 10] and sorted(ledger.good) == [4, 12] and manager.closed


def test_ledger_write_error_is_one_line_naming_the_last_good_step(monkeypatch):
    monkeypatch.setattr(checkpoint, "save", lambda manager, step, *a, **k: manager.save(step, None, True))
    manager = _FakeManager()
    ledger = retention.Ledger(manager, {4: True, 6: True}, keep=1)
    ledger.save(8, None, None, {"good": True})
    manager.fail = ValueError("RESOURCE_EXHAUSTED: Error writing \"x\": Failed to write 9 bytes to file 3: "
                              "No space left on device [os_error_code='28'] [tensorstore_spec='{...}']")
    with pytest.raises(UserError) as err:
        ledger.close()
    text = str(err.value)
    assert "\n" not in text and "tensorstore_spec" not in text
    assert text.startswith("cannot write checkpoint 8 in /runs/r/checkpoints: No space left on device")
    assert "the last good checkpoint is step 6" in text
    assert 6 not in manager.deleted and manager.closed  # 8 never completed: 6 was not pruned for it


# ----------------------------------------------------------------------------- metrics.jsonl


def _lines(path):
    with open(path) as f:
        return [json.loads(line)["step"] for line in f]


def test_resume_drops_a_half_written_last_line(tmp_path, capsys):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "train/loss": 1.0}\n{"step": 2, "train/loss": 0.5}\n{"step": 3, "train/lo')
    truncate_after(str(path), 2)
    assert _lines(path) == [1, 2]
    assert "dropped a half-written last line" in capsys.readouterr().err


def test_resume_refuses_a_malformed_line_elsewhere_in_one_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": oops}\n{"step": 3}\n')
    with pytest.raises(UserError, match=r"metrics.jsonl:2: not JSON"):
        truncate_after(str(path), 3)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_under_metrics_is_one_line(tmp_path):
    logger = MetricsLogger(str(tmp_path), True, 0, 10, progress=False)
    logger._file.close()
    logger._file = open("/dev/full", "a")  # every flush fails with ENOSPC, as on a full disk
    with pytest.raises(UserError, match=r"^cannot write .*metrics.jsonl: No space left on device$"):
        logger.log(1, {"loss": 1.0})
    with pytest.raises(UserError, match="No space left on device"):
        logger.close()


# ----------------------------------------------------------------------------- paths


def test_a_step_directory_names_its_step(tmp_path):
    step = tmp_path / "run" / "checkpoints" / "4"
    step.mkdir(parents=True)
    (step / checkpoint.STEP_FILE).write_text("{}")
    assert checkpoint.locate(str(step)) == (str(tmp_path / "run" / "checkpoints"), 4)
    assert checkpoint.locate(str(tmp_path / "run")) == (str(tmp_path / "run" / "checkpoints"), None)
    assert checkpoint.locate(str(tmp_path / "run" / "checkpoints")) == (str(tmp_path / "run" / "checkpoints"), None)


# ----------------------------------------------------------------------------- resume choice


def test_resume_takes_the_newest_good_checkpoint_that_restores():
    metas = {2: {"good": True}, 4: {}, 6: "NOT_FOUND: manifest missing",
             8: {"good": False, "bad_reason": "diverged: held-out NLL 9 at step 7"}, 10: {"good": True}}

    def attempt(step, meta):
        if step == 10:
            raise ValueError("OUT_OF_RANGE: Requested byte range [0, 91000) is not valid for value of size 1000")
        return f"state {step}"

    step, state, passed = checkpoint.newest_restorable(_FakeManager(), metas, attempt)
    assert (step, state) == (4, "state 4")  # 4 predates `good`: it counts as good
    assert [s for s, _ in passed] == [10, 8, 6]
    assert "checkpoint 8 is marked not good (diverged: held-out NLL 9 at step 7)" in checkpoint.describe(passed)
    assert "checkpoint 10 is damaged (OUT_OF_RANGE" in checkpoint.describe(passed)

    def different_model(step, meta):
        raise UserError("holds checkpoints of a different model")

    with pytest.raises(UserError, match="different model"):  # the user's to fix: no fallback past it
        checkpoint.newest_restorable(_FakeManager(), metas, different_model)
    with pytest.raises(UserError, match="no restorable good checkpoint"):
        checkpoint.newest_restorable(_FakeManager(), {6: "gone", 8: {"good": False}}, attempt)
    with pytest.raises(UserError, match=r"checkpoint 6 in .* is damaged: gone"):
        checkpoint.newest_restorable(_FakeManager(), {6: "gone"}, attempt, step=6)


# ----------------------------------------------------------------------------- held-out confirmation


def test_the_newest_confirmed_checkpoint_outlives_keep():
    # keep=2, a checkpoint every 2 steps, an eval every 10: 10 was confirmed, 12-16 only assumed good
    assert retention.to_delete({10: True, 12: True, 14: True, 16: True}, 2, confirmed=10) == [12]
    assert retention.to_delete({10: True, 12: True, 14: True, 16: True}, 2) == [10, 12]
    assert retention.to_delete({10: True, 12: False}, 1, confirmed=10) == []


def test_a_failed_eval_demotes_the_unconfirmed_and_the_confirmed_one_is_the_last_good(monkeypatch):
    saved = {}
    monkeypatch.setattr(checkpoint, "save", lambda manager, step, state, it, meta, **k: saved.update({step: meta}))
    manager = _FakeManager()
    ledger = retention.Ledger(manager, {}, keep=2)
    assert ledger.judged(10, True) == []
    ledger.save(10, None, None, {"good": True})  # the eval at its own step passed: confirmed at once
    for step in (12, 14, 16):
        ledger.save(step, None, None, {"good": True})
    ledger.save(18, None, None, {"good": True})
    assert ledger.confirmed == 10 and saved[18]["confirmed"] == 10
    assert manager.deleted == [12]  # keep=2 rotates (18 is still being written), but never 10
    assert ledger.judged(20, False) == [14, 16, 18]  # saved since the eval that passed, before the one that failed
    assert ledger.last_good() == 10
    ledger.save(20, None, None, {"good": False})
    ledger.close()  # not-good ones after the last good: the newest 2 stay, to look at
    assert manager.deleted == [12, 14, 16] and saved[20] == {"good": False, "confirmed": 10}
    # after a restart, a reader demotes the same checkpoints from the metas alone
    assert retention.demoted({s: saved[s] for s in (10, 18, 20)}) == {18: 20}


def test_a_passing_eval_confirms_what_waited_for_it(monkeypatch):
    monkeypatch.setattr(checkpoint, "save", lambda manager, step, *a, **k: None)
    ledger = retention.Ledger(_FakeManager(), {4: True, 6: True}, keep=3, confirmed=4)
    ledger.save(8, None, None, {"good": True})
    assert ledger.judged(9, True) == [] and ledger.confirmed == 8


def test_demoted_needs_the_confirmed_record():
    assert retention.demoted({2: {"good": True}, 4: {"good": False}}) == {}  # a run from before `confirmed`
    assert retention.demoted({2: {"good": True}, 4: {"good": False, "confirmed": None}, 6: "DATA_LOSS"}) == {2: 4}
    assert retention.demoted({2: {"good": True, "confirmed": 2}, 4: {"good": False, "confirmed": 2}}) == {}


# ----------------------------------------------------------------------------- unreadable checkpoints


class _Listed(_FakeManager):
    def __init__(self, steps):
        super().__init__()
        self.steps = steps

    def all_steps(self):
        return self.steps


def test_only_clear_damage_counts_as_damage(monkeypatch):
    errors = {2: KeyError('Item "meta" was not found in the checkpoint.'), 4: json.JSONDecodeError("x", "{", 1)}

    def read_meta(manager, step):
        if step in errors:
            raise errors[step]
        return {"good": step != 10, "confirmed": 6} if step >= 8 else {"good": True}

    monkeypatch.setattr(checkpoint, "read_meta", read_meta)
    metas = checkpoint.read_metas(_Listed([2, 4, 6, 8, 10]))
    assert isinstance(metas[2], str) and isinstance(metas[4], str) and metas[6] == {"good": True}
    assert metas[8]["good"] is False and "checkpoint 10" in metas[8]["bad_reason"]  # unconfirmed, then diverged
    errors[6] = PermissionError(13, "Permission denied")
    with pytest.raises(UserError, match=r"^cannot read checkpoint 6 in .*: .*Permission denied"):
        checkpoint.read_metas(_Listed([2, 4, 6]))

    def attempt(step, meta):
        raise PermissionError(13, "Permission denied")

    with pytest.raises(UserError, match="cannot read checkpoint 6"):  # not damage: nothing is passed over
        checkpoint.newest_restorable(_FakeManager(), {6: {"good": True}, 4: {"good": True}}, attempt)


def test_an_older_unreadable_checkpoint_is_never_deleted(monkeypatch):
    from types import SimpleNamespace

    from rlp_jax.train import loop

    metas = {2: "DATA_LOSS: truncated", 4: {"good": True, "confirmed": 4}, 6: {"good": True, "confirmed": 4}}
    monkeypatch.setattr(checkpoint, "read_metas", lambda manager: metas)
    monkeypatch.setattr(checkpoint, "restore_state", lambda manager, *a: "state")
    monkeypatch.setattr(loop, "_check_resumable", lambda meta, cfg: None)
    manager = _FakeManager()
    session = SimpleNamespace(cfg=SimpleNamespace(run=SimpleNamespace(keep=1)), manager=manager, iterator=None,
                              programs=SimpleNamespace(state_like=None, shardings=None), meta={},
                              checkpoint_dir=manager.directory)
    loop._restore_or_init(session)
    assert (session.start, session.state) == (6, "state")
    assert session.ledger.good == {4: True, 6: True} and session.ledger.confirmed == 4
    session.ledger.close()
    assert manager.deleted == []  # 2 is not the ledger's; 4 is the newest confirmed one


def test_open_closes_what_it_opened_when_the_logger_fails(monkeypatch):
    from types import SimpleNamespace

    from rlp_jax.train import loop
    from rlp_jax.train import metrics as metrics_lib

    closed = []
    iterator = SimpleNamespace(close=lambda: closed.append("iterator"))
    monkeypatch.setattr(loop.train_data, "make_train_iterator", lambda *a: iterator)
    monkeypatch.setattr(checkpoint, "make_manager", lambda *a: _FakeManager())

    def restore_or_init(session):
        session.start, session.ledger = 0, SimpleNamespace(close=lambda: closed.append("ledger"))

    def refuse(*a):
        raise UserError("cannot write metrics.jsonl")

    monkeypatch.setattr(loop, "_restore_or_init", restore_or_init)
    monkeypatch.setattr(metrics_lib, "MetricsLogger", refuse)
    run = SimpleNamespace(checkpoint_dir="/x", run_dir="/r", checkpoint_every=2, async_checkpoint=False, steps=4,
                          progress=False)
    cfg = SimpleNamespace(run=run, model=SimpleNamespace(vocab_size=8), to_dict=dict)
    with pytest.raises(UserError, match="metrics.jsonl"):
        loop._open(cfg, None, None)
    assert closed == ["ledger", "iterator"]


def test_metrics_repair_replaces_the_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n')

    def full(*a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OSError):
        truncate_after(str(path), 1)
    assert _lines(path) == [1, 2] and os.listdir(tmp_path) == ["metrics.jsonl"]


def test_orbax_errors_stay_visible_but_not_a_failed_save_the_caller_reports():
    import logging

    keep = checkpoint._OrbaxLogFilter().filter
    orbax = os.path.join("", "site-packages", "orbax", "checkpoint", "x.py")

    def record(level, path, msg="m"):
        return logging.LogRecord("absl", level, path, 1, msg, None, None)

    assert keep(record(logging.ERROR, orbax)) and keep(record(logging.WARNING, "/elsewhere/y.py"))
    assert not keep(record(logging.WARNING, orbax)) and not keep(record(logging.INFO, orbax))
    for failed in ("[process=0] Failed to run 3 Handler Commit operations or the Commit callback in background "
                   "save thread, directory: /d", "[step=8][wait_until_finished] Save Finalize thread (f) failed."):
        assert not keep(record(logging.ERROR, orbax, failed))  # a save's own failure: the caller reports it


def test_unread_orbax_write_futures_are_not_logged_at_exit():
    import logging
    import sys as sys_lib

    code = compile("def write():\n    raise ValueError('OUT_OF_RANGE: Error writing')\n",
                   os.path.join(os.sep, "site-packages", "orbax", "checkpoint", "serialization.py"), "exec")
    scope = {}
    exec(code, scope)
    try:
        scope["write"]()
    except ValueError:
        exc_info = sys_lib.exc_info()
    keep = checkpoint._OrbaxAsyncioFilter().filter
    assert not keep(logging.LogRecord("asyncio", logging.ERROR, "base_events.py", 1,
                                      "Future exception was never retrieved", None, exc_info))
    assert keep(logging.LogRecord("asyncio", logging.ERROR, "base_events.py", 1, "Future exception was never "
                                  "retrieved", None, (ValueError, ValueError(), None)))
    tensorstore = ValueError('OUT_OF_RANGE: Error writing "x/0.0.0" in OCDBT database at local file '
                             '"/r/checkpoints/8.orbax-checkpoint-tmp/opt_state.orbax-checkpoint-tmp/": File too large')
    assert not keep(logging.LogRecord("asyncio", logging.ERROR, "base_events.py", 1, "Future exception was never "
                                      "retrieved", None, (ValueError, tensorstore, None)))  # no Python frames


@pytest.mark.parametrize("policy", ["skip", "stop"])
def test_a_divergence_names_the_confirmed_checkpoint(policy, monkeypatch):
    from types import SimpleNamespace

    from rlp_jax.train import loop

    moved = []
    monkeypatch.setattr(checkpoint, "save", lambda manager, step, *a, **k: None)
    monkeypatch.setattr(checkpoint, "set_aside", lambda manager, passed: moved.extend(
        f"{manager.directory}/{s}.diverged" for s, _ in passed) or moved)
    ledger = retention.Ledger(_FakeManager(), {10: True, 12: True, 14: True}, keep=2, confirmed=10)
    messages = []
    session = SimpleNamespace(cfg=SimpleNamespace(run=SimpleNamespace(max_eval_rise=1.0, nonfinite=policy)),
                              meta={"good": True, "best_eval_nll": 2.0}, last_eval={"nll": 9.0}, ledger=ledger,
                              logger=SimpleNamespace(message=messages.append))
    if policy == "stop":
        with pytest.raises(UserError) as err:
            loop._check_heldout(session, 15)
        text = str(err.value)
        assert "set aside /runs/r/checkpoints/12.diverged, /runs/r/checkpoints/14.diverged" in text
    else:
        loop._check_heldout(session, 15)
        (text,) = messages
        assert "checkpoints 12, 14, saved since the last held-out eval that passed, are marked not good" in text
    assert text.endswith("the last good checkpoint is step 10")
