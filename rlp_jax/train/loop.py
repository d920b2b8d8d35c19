"""The training loop behind `rlp-jax train`; `train()` reads top to bottom:

    join the multi-host job → mesh → resolve config (data, tokenizer, model) → lock the
    run directory, check the config against the run it holds, write `config.yaml` →
    compiled step + eval → resume from the newest good checkpoint that restores, else
    initialize → for each step: global batch, step, bad-step policy, eval, log,
    checkpoint, preemption check.

Resume is exact: the state carries the rng, the checkpoint carries the Grain iterator
state, and the compiled program is the same, so a resumed run reproduces an
uninterrupted one bit for bit on CPU. SIGTERM (preemption) saves the current step and
returns normally (exit code 0).

Metrics are fetched one step late, as MaxText buffers them: step N's metrics stay on the
device until step N+1 has been dispatched, so the host never waits for a step that it
could already be queueing behind. Step N's metrics are fetched at once only where a
decision at step N needs them: before its eval, and before its checkpoint (its bad-step
flag, non-finite or diverged, decides whether it may be saved, and its skip count is saved
with it). So `run.nonfinite=stop` still never saves a bad step; at most one step past it
has been dispatched, and is dropped. `metrics.jsonl` and TensorBoard get the same records in
the same order as with a fetch after every step; the last step is flushed at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
import time
from typing import Any, Callable

from rlp_jax.errors import UserError
from rlp_jax.train import config as config_lib
from rlp_jax.train import data as train_data
from rlp_jax.train import distributed
from rlp_jax.train import resume
from rlp_jax.train import run_lock
from rlp_jax.train import setup as train_setup
from rlp_jax.train.preemption import Preemption


def _say(text: str) -> None:
    import jax

    if jax.process_index() == 0:
        print(text, flush=True)


def _check_resumable(saved: dict, cfg) -> None:
    """The checkpoint's saved config against `cfg`: what a resume may not change (model,
    data, objective, seed, and switches that change the saved state: `resume.check`)."""
    resume.check(saved.get("config", {}), cfg, cfg.run.checkpoint_dir or cfg.run.run_dir)


# ----------------------------------------------------------------------------- setup


def _resolve(cfg: config_lib.TrainConfig):
    """The mesh and the resolved config (data, tokenizer, model); nothing is written yet."""
    import jax

    from rlp_jax.model import sharding

    mesh = sharding.make_mesh(cfg.mesh)
    cfg, tokenizer = train_setup.resolve(cfg)
    train_setup.check_mesh(cfg, mesh, jax.process_count())
    if cfg.run.objective == "rpt" and jax.process_count() > 1:
        raise UserError("run.objective=rpt scores decoded text on one host; multi-process RPT is not supported yet")
    return cfg, tokenizer, mesh


def _claim(cfg: config_lib.TrainConfig):
    """Process 0 locks the run directory, checks the new config against the run it holds,
    and only then writes `config.yaml`: a refused start changes nothing there. Every
    process learns whether process 0 succeeded. Returns the lock (a no-op elsewhere)."""
    import jax

    lock, error = contextlib.nullcontext(), None
    if jax.process_index() == 0:
        try:
            lock = run_lock.acquire(cfg.run.run_dir)
            saved = resume.saved_config(cfg)
            if saved is not None:
                resume.check(saved[0], cfg, saved[1])
            print(f"resolved config: {train_setup.write_config(cfg)}", flush=True)
        except BaseException as err:  # re-raised below, once the other processes know
            lock.__exit__(None, None, None)
            if not isinstance(err, Exception):  # KeyboardInterrupt, SIGTERM's SystemExit
                raise
            error = err
    if not distributed.all_agree(error is None):
        raise error or UserError("process 0 could not start in run.run_dir (see its error)")
    return lock


@dataclasses.dataclass
class _Programs:
    """The compiled train and eval steps, and the train state's shapes and shardings."""

    step: Callable
    eval_step: Callable
    state_like: Any
    shardings: Any
    init: Callable  # init(params, rng=key) -> a fresh TrainState (with θ_0 kept if KL needs it)
    thoughts: Callable  # thoughts(state, step, start, logger): sample thoughts at each eval (`thought_samples`)


def _compile(cfg: config_lib.TrainConfig, tokenizer, mesh) -> _Programs:
    import jax

    from rlp_jax.model import transformer as model
    from rlp_jax.objectives import make_objective
    from rlp_jax.train.heldout import make_eval_step
    from rlp_jax.train import thought_samples
    from rlp_jax.train.state import init_state
    from rlp_jax.train.step import make_train_step

    run = cfg.run
    objective = make_objective(run.objective, cfg.model, cfg.rollout, cfg.rlp, cfg.rpt, tokenizer)
    init = functools.partial(init_state, ocfg=cfg.optimizer, reference=objective.needs_reference)
    state_like = jax.eval_shape(lambda k: init(model.init_params(cfg.model, k), rng=k), jax.random.key(0))
    frozen = None
    if run.objective == "rpt":
        def frozen():
            return train_setup.proxy_model(cfg, mesh, shardings.params)
    step_fn, shardings = make_train_step(objective, cfg.optimizer, cfg.ema_decay, state_like, mesh,
                                         skip_nonfinite=run.nonfinite == "skip", frozen=frozen,
                                         max_update_ratio=run.max_update_ratio)
    eval_step = make_eval_step(cfg.model, cfg.rollout, run.objective == "rlp", mesh, shardings.params)
    return _Programs(step_fn, eval_step, state_like, shardings, init,
                     thought_samples.for_run(cfg, tokenizer, mesh, shardings.params))


@dataclasses.dataclass
class _LateMetrics:
    """One step's metrics: device arrays until `_fetch` brings them to the host."""

    step: int
    on_device: dict
    host: dict | None = None


@dataclasses.dataclass
class _Session:
    """What one `train()` call holds: resources to close, the state, and progress so far."""

    cfg: config_lib.TrainConfig
    mesh: Any
    programs: _Programs
    iterator: Any
    manager: Any
    checkpoint_dir: str
    state: Any = None
    start: int = 0
    done: int = 0  # the last step taken
    meta: dict = dataclasses.field(default_factory=dict)  # saved with every checkpoint
    last_eval: dict = dataclasses.field(default_factory=dict)
    status: str = "finished"
    logger: Any = None
    preemption: Preemption | None = None
    pending: _LateMetrics | None = None  # the last dispatched step's metrics, until logged
    ledger: Any = None  # retention.Ledger: the checkpoints' good flags, saves and pruning
    clock: float = 0.0  # when the previous step's metrics arrived (or an eval ended)


def _open(cfg: config_lib.TrainConfig, mesh, programs: _Programs) -> _Session:
    """Data iterator, checkpoint manager, restored or initial state, metrics logger, SIGTERM handler."""
    import jax

    from rlp_jax.train import checkpoint
    from rlp_jax.train import metrics as metrics_lib

    run = cfg.run
    iterator = train_data.make_train_iterator(cfg, cfg.model.vocab_size, jax.process_index(), jax.process_count())
    ckpt_dir = run.checkpoint_dir or os.path.join(run.run_dir, "checkpoints")
    try:
        manager = checkpoint.make_manager(ckpt_dir, run.checkpoint_every, run.async_checkpoint)
    except BaseException:
        _close_iterator(iterator)
        raise
    session = _Session(cfg, mesh, programs, iterator, manager, ckpt_dir,
                       meta={"config": cfg.to_dict(), "skipped": 0})
    try:
        _restore_or_init(session)  # closes the manager itself if it fails
    except BaseException:
        _close_iterator(iterator)
        raise
    try:
        session.logger = metrics_lib.MetricsLogger(run.run_dir, jax.process_index() == 0, session.start, run.steps,
                                                   run.progress)
    except BaseException:
        try:
            session.ledger.close()
        finally:
            _close_iterator(iterator)
        raise
    session.preemption = Preemption()
    return session


def _close_iterator(iterator) -> None:
    if hasattr(iterator, "close"):
        iterator.close()


def _restore_or_init(session: _Session) -> None:
    """Resume from the newest good checkpoint that restores (same model only), else initialize.

    Newer checkpoints passed over (damaged, or marked not good after a divergence, or saved
    unconfirmed before one: `retention`) are set aside under another name, with a one-line
    warning, so the resumed run can write their steps again; resuming from a collapsed
    state would be pointless. An older unreadable checkpoint is left alone: the ledger
    never counts (nor deletes) it.
    """
    import jax

    from rlp_jax.train import checkpoint
    from rlp_jax.train import retention

    cfg, programs, manager = session.cfg, session.programs, session.manager

    def attempt(step, meta):
        _check_resumable(meta, cfg)
        return checkpoint.restore_state(manager, programs.state_like, programs.shardings, session.iterator, step)

    try:
        metas = checkpoint.read_metas(manager)
        if metas:
            session.start, session.state, passed = checkpoint.newest_restorable(manager, metas, attempt)
            if passed:
                moved = checkpoint.set_aside(manager, passed)
                checkpoint.warn(f"{checkpoint.describe(passed)}; moved to {', '.join(moved)}; "
                      f"resuming from checkpoint {session.start}")
            saved = metas[session.start]
            session.meta.update(skipped=int(saved.get("skipped", 0)), best_eval_nll=saved.get("best_eval_nll"))
            _say(f"resumed from checkpoint step {session.start} in {session.checkpoint_dir}")
        else:
            params = train_setup.initial_params(cfg, session.mesh, programs.shardings.params)
            init = jax.jit(lambda p, k: programs.init(p, rng=k), out_shardings=programs.shardings)
            session.state, session.start = init(params, jax.random.key(cfg.run.seed + 1)), 0
    except BaseException:
        manager.close()  # Orbax's threads would otherwise outlive the error and report it again
        raise
    session.meta["good"] = True
    readable = {s: m for s, m in metas.items() if s <= session.start and isinstance(m, dict)}
    confirmed = max((m["confirmed"] for m in readable.values() if m.get("confirmed") is not None), default=None)
    session.ledger = retention.Ledger(manager, {s: checkpoint.is_good(m) for s, m in readable.items()},
                                      cfg.run.keep, confirmed)
    session.done = session.start


def _close(session: _Session) -> None:
    try:
        session.ledger.close()  # waits for the last save: a write error is raised here, in one line
    finally:
        session.logger.close()
        session.preemption.restore()
        _close_iterator(session.iterator)


# ----------------------------------------------------------------------------- one step


def _dispatch(session: _Session, step: int) -> None:
    """Queue step `step` on the next global batch, then log the previous step while it runs."""
    window = train_data.global_window(next(session.iterator), session.mesh)
    session.state, on_device = session.programs.step(session.state, window)
    session.done = step
    _flush(session)
    session.pending = _LateMetrics(step, on_device)


def _fetch(session: _Session) -> dict:
    """The pending step's metrics as floats (waits for that step); the bad-step policy applied once."""
    import jax

    late, run = session.pending, session.cfg.run
    if late.host is None:
        metrics = {k: float(v) for k, v in jax.device_get(late.on_device).items()}
        bad = bool(metrics["nonfinite"] or metrics["diverged"])
        if bad and run.nonfinite == "stop":
            what = ("non-finite loss or gradient" if metrics["nonfinite"] else
                    f"diverging update (|Δθ|/|θ| = {metrics['update_ratio']:.3g} > run.max_update_ratio="
                    f"{run.max_update_ratio:g})")
            raise UserError(f"{what} at step {late.step} (run.nonfinite=stop); stopped without saving it; "
                            f"{_last_good(session)}")
        session.meta["skipped"] += int(bad)
        now = time.perf_counter()
        tokens_per_step = session.cfg.data.batch_size * session.cfg.data.seq_len
        metrics.update(skipped_total=session.meta["skipped"], tokens_per_s=tokens_per_step / (now - session.clock),
                       step_time_s=now - session.clock)
        session.clock = now
        late.host = metrics
    return late.host


def _last_good(session: _Session) -> str:
    step = session.ledger.last_good()
    return f"the last good checkpoint is step {step}" if step is not None else "no good checkpoint was saved"


def _flush(session: _Session) -> None:
    """Fetch and log the pending step's metrics, if a step is pending."""
    if session.pending is not None:
        _log(session, session.pending.step, _fetch(session))
        session.pending = None


def _evaluate_if_due(session: _Session, step: int) -> None:
    every = session.cfg.run.eval_every
    if every and step % every == 0:
        _fetch(session)  # under run.nonfinite=stop a non-finite step ends the run before its eval
        _evaluate_now(session, step)


def _evaluate_now(session: _Session, step: int) -> None:
    from rlp_jax.train import heldout

    session.last_eval = heldout.evaluate(session.cfg, session.programs.eval_step, session.state, session.mesh,
                                 session.cfg.model.vocab_size)
    session.logger.log(step, session.last_eval, prefix="eval")
    session.programs.thoughts(session.state, step, session.start, session.logger)  # thoughts.jsonl
    _check_heldout(session, step)
    session.clock = time.perf_counter()  # step times leave the eval out


def _check_heldout(session: _Session, step: int) -> None:
    """A held-out divergence (see `retention.judge_heldout`) stops the run under
    `run.nonfinite=stop`; otherwise the checkpoints saved meanwhile are marked not good."""
    from rlp_jax.train import retention

    run, was_good, nll = session.cfg.run, session.meta.get("good", True), session.last_eval.get("nll")
    why = retention.judge_heldout(session.meta, nll, step, run.max_eval_rise)
    demoted = session.ledger.judged(step, why is None) if run.max_eval_rise and nll is not None else []
    unconfirmed = (f"; checkpoints {', '.join(map(str, demoted))}, saved since the last held-out eval that "
                   "passed, are marked not good too" if demoted else "")
    if why and run.nonfinite == "stop":
        moved = session.ledger.set_aside(demoted, f"is marked not good (unconfirmed before {why})")
        unconfirmed = f"; set aside {', '.join(moved)} (unconfirmed before it)" if moved else ""
        raise UserError(f"{why} (run.nonfinite=stop); stopped{unconfirmed}; {_last_good(session)}")
    if why and was_good:
        session.logger.message(f"rlp-jax: warning: {why}; checkpoints from here on are marked not good until "
                               f"it recovers{unconfirmed}; {_last_good(session)}")


def _log(session: _Session, step: int, metrics: dict) -> None:
    run = session.cfg.run
    if step % run.log_every == 0 or step == run.steps:
        session.logger.log(step, metrics)
    session.logger.bar(step, {"reward": metrics.get("reward_mean", float("nan")), "loss": metrics["loss"],
                              "eval_ig": session.last_eval.get("info_gain", float("nan")),
                              "tok/s": metrics["tokens_per_s"]})


def _checkpoint(session: _Session, step: int) -> bool:
    """Save `step` if due (always on the last step or a SIGTERM); True if preempted (stop now).

    The decision is taken here (every `run.checkpoint_every` steps; Orbax's default policy
    would also save the first one) so that the step's metrics are fetched first: its bad-step
    flag decides whether it may be saved, and its skip count goes into the checkpoint's meta.
    """
    run = session.cfg.run
    preempted = session.preemption.requested()
    if preempted or step == run.steps or step % run.checkpoint_every == 0:
        run_lock.check(run.run_dir)  # a training whose lock was taken over stops without saving
        _flush(session)
        session.ledger.save(step, session.state, session.iterator, dict(session.meta))
    if preempted:
        session.status = "preempted"
    return preempted


def _train_steps(session: _Session) -> None:
    """Steps start+1 … run.steps, or until a SIGTERM (after saving the step it arrived in)."""
    run = session.cfg.run
    if session.start == 0 and run.eval_at_start and run.eval_every:
        _evaluate_now(session, 0)  # the "before" of the run's summary
    session.clock = time.perf_counter()
    for step in range(session.start + 1, run.steps + 1):
        _dispatch(session, step)
        _evaluate_if_due(session, step)
        if _checkpoint(session, step):
            break
        if run.sleep_per_step:
            time.sleep(run.sleep_per_step)
    _flush(session)


def _finish(session: _Session) -> dict:
    """The end-of-run plot and the summary `train()` returns."""
    import jax

    from rlp_jax.train import metrics as metrics_lib

    if jax.process_index() == 0:
        metrics_lib.write_training_plot(session.cfg.run.run_dir)
    if session.status == "preempted":
        _say(f"SIGTERM: saved checkpoint step {session.done} in {session.checkpoint_dir}; "
             "rerun the same command to resume")
    return {"status": session.status, "step": session.done, "run_dir": session.cfg.run.run_dir,
            "checkpoints": session.checkpoint_dir, "skipped": session.meta["skipped"],
            "last_eval": session.last_eval}


# ----------------------------------------------------------------------------- entry points


def train(cfg: config_lib.TrainConfig) -> dict:
    """Run (or resume) the configured training; returns a summary dict."""
    distributed.initialize(cfg.distributed)
    run_lock.check_writable(train_setup.expand(cfg.run.run_dir))  # before data preparation
    cfg, tokenizer, mesh = _resolve(cfg)
    with _claim(cfg):
        from rlp_jax.train import warmup

        warmup.run_if_needed(cfg, train, _say)
        session = _open(cfg, mesh, _compile(cfg, tokenizer, mesh))
        try:
            _train_steps(session)
        finally:
            _close(session)
        return _finish(session)


def main(config_path: str | None, overrides: list[str]) -> int:
    cfg = config_lib.load_config(config_path, overrides)
    summary = train(cfg)
    import jax

    if jax.process_index() == 0:
        d = summary["run_dir"]
        print(f"{summary['status']} at step {summary['step']}; skipped bad steps (non-finite or diverged): {summary['skipped']}")
        print(f"metrics:     {os.path.join(d, 'metrics.jsonl')} (TensorBoard: tensorboard --logdir {os.path.join(d, 'tb')})")
        print(f"checkpoints: {summary['checkpoints']}")
        print(f"config:      {os.path.join(d, 'config.yaml')}")
        print(f"plots:       {os.path.join(d, 'plots', 'training.png')}")
        if os.path.isfile(os.path.join(d, "thoughts.jsonl")):
            print(f"thoughts:    {os.path.join(d, 'thoughts.jsonl')}")
        from rlp_jax.train.warmup import summary_lines

        for line in summary_lines(d, cfg.run.objective):
            print(line)
        sys.stdout.flush()
    return 0
