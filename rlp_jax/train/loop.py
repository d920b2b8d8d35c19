"""The training loop behind `rlp-jax train`, readable top to bottom:

    join the multi-host job → mesh → resolve config (data, tokenizer, model) → compiled
    step + eval → resume from the latest checkpoint, else initialize → for each step:
    global batch, step, non-finite policy, eval, log, checkpoint, preemption check.

Resume is exact: the state carries the rng, the checkpoint carries the Grain iterator
state, and the compiled program is the same, so a resumed run reproduces an
uninterrupted one bit for bit on CPU. SIGTERM (preemption) saves the current step and
returns normally (exit code 0).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time

from rlp_jax.train import config as config_lib
from rlp_jax.train import distributed
from rlp_jax.train import data as train_data
from rlp_jax.train import setup as train_setup
from rlp_jax.errors import UserError

SUMMARY_KEYS = {"rlp": ("reward_mean", "loss"), "ntp": ("loss",)}


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


def _say(text: str) -> None:
    import jax

    if jax.process_index() == 0:
        print(text, flush=True)


def _check_same_model(saved: dict, cfg) -> None:
    old = saved.get("config", {}).get("model", {})
    new = config_lib.TrainConfig.to_dict(cfg)["model"]
    diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if diff:
        k = diff[0]
        raise UserError(f"{cfg.run.run_dir} holds checkpoints of a different model (model.{k}: "
                        f"{old.get(k)!r} there, {new.get(k)!r} now); use another run.run_dir")


def evaluate(cfg, eval_step, state, mesh, vocab_size: int) -> dict:
    """Mean held-out metrics over `run.eval_batches` validation batches (fixed eval key)."""
    import jax
    import numpy as np

    it = train_data.make_train_iterator(cfg, vocab_size, jax.process_index(), jax.process_count(),
                                        split="validation")
    key = jax.random.key(cfg.run.seed + 7)
    totals: dict[str, float] = {}
    try:
        for i in range(cfg.run.eval_batches):
            window = train_data.global_batch(next(it)["tokens"], mesh)
            out = jax.device_get(eval_step(state.params, state.ema_params, window, jax.random.fold_in(key, i)))
            for k, v in out.items():
                totals[k] = totals.get(k, 0.0) + float(v) / cfg.run.eval_batches
    except StopIteration:
        raise UserError("the validation split has too few windows for run.eval_batches") from None
    finally:
        if hasattr(it, "close"):
            it.close()
    return {k: float(np.float32(v)) for k, v in totals.items()}


def train(cfg: config_lib.TrainConfig) -> dict:
    """Run (or resume) the configured training; returns a summary dict."""
    distributed.initialize(cfg.distributed)
    import jax
    import numpy as np

    from rlp_jax.train import checkpoint
    from rlp_jax.model import transformer as model
    from rlp_jax.objectives import rlp
    from rlp_jax.model import sharding
    from rlp_jax.train import step as train_step
    from rlp_jax.train import metrics as metrics_lib

    mesh = sharding.make_mesh(cfg.mesh)
    cfg, tokenizer = train_setup.resolve(cfg)
    train_setup.check_mesh(cfg, mesh, jax.process_count())
    if cfg.run.objective == "rpt" and jax.process_count() > 1:
        raise UserError("run.objective=rpt scores decoded text on one host; multi-process RPT is not supported yet")
    run, main = cfg.run, jax.process_index() == 0
    text = config_lib.dump_yaml(cfg)
    if main:
        os.makedirs(run.run_dir, exist_ok=True)
        with open(os.path.join(run.run_dir, "config.yaml"), "w") as f:
            f.write(text)
        print("# resolved config\n" + text, flush=True)

    state_like = jax.eval_shape(lambda k: rlp.init_state(model.init_params(cfg.model, k), cfg.optimizer, k),
                                jax.random.key(0))
    step_fn, shardings = train_step.make_train_step(run.objective, cfg.model, cfg.rlp, cfg.optimizer, mesh,
                                                    state_like, skip_nonfinite=run.nonfinite == "skip",
                                                    tokenizer=tokenizer, pcfg=cfg.rpt)
    eval_step = train_step.make_eval_step(run.objective, cfg.model, cfg.rlp, mesh, shardings.params)
    vocab = cfg.model.vocab_size
    iterator = train_data.make_train_iterator(cfg, vocab, jax.process_index(), jax.process_count())
    ckpt_dir = run.checkpoint_dir or os.path.join(run.run_dir, "checkpoints")
    manager = checkpoint.make_manager(ckpt_dir, run.checkpoint_every, run.keep, run.async_checkpoint)
    meta = {"config": cfg.to_dict(), "skipped": 0}

    latest = manager.latest_step()
    if latest is not None:
        saved = checkpoint.read_meta(manager, latest)
        _check_same_model(saved, cfg)
        state, start = checkpoint.restore(manager, state_like, shardings, iterator)
        meta["skipped"] = int(saved.get("skipped", 0))
        _say(f"resumed from checkpoint step {start} in {ckpt_dir}")
    else:
        params = train_setup.initial_params(cfg, mesh, shardings.params)
        init = jax.jit(lambda p, k: rlp.init_state(p, cfg.optimizer, k), out_shardings=shardings)
        state, start = init(params, jax.random.key(run.seed + 1)), 0
        del params

    logger = metrics_lib.MetricsLogger(run.run_dir, main, start, run.steps, run.progress)
    preemption = Preemption()
    tokens_per_step = cfg.data.batch_size * cfg.data.seq_len
    last_eval, stopped, done = {}, "finished", start
    try:
        clock = time.perf_counter()
        for done in range(start + 1, run.steps + 1):
            window = train_data.global_batch(next(iterator)["tokens"], mesh)
            state, metrics = step_fn(state, window)
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            if metrics["nonfinite"] and run.nonfinite == "stop":
                raise UserError(f"non-finite loss or gradient at step {done} (run.nonfinite=stop); stopped "
                                f"without saving it; the last good checkpoint is step {manager.latest_step()}")
            meta["skipped"] += int(metrics["nonfinite"])
            now = time.perf_counter()
            metrics.update(skipped_total=meta["skipped"], tokens_per_s=tokens_per_step / (now - clock),
                           step_time_s=now - clock)
            clock = now
            if run.eval_every and done % run.eval_every == 0:
                last_eval = evaluate(cfg, eval_step, state, mesh, vocab)
                logger.log(done, last_eval, prefix="eval")
                clock = time.perf_counter()
            if done % run.log_every == 0 or done == run.steps:
                logger.log(done, metrics)
            logger.bar(done, {"reward": metrics.get("reward_mean", float("nan")),
                              "loss": metrics["loss"], "eval_ig": last_eval.get("info_gain", float("nan")),
                              "tok/s": metrics["tokens_per_s"]})
            preempted = preemption.requested()
            checkpoint.save(manager, done, state, iterator, meta, force=preempted or done == run.steps)
            if preempted:
                stopped = "preempted"
                break
            if run.sleep_per_step:
                time.sleep(run.sleep_per_step)
    finally:
        manager.wait_until_finished()
        manager.close()
        logger.close()
        preemption.restore()
        if hasattr(iterator, "close"):
            iterator.close()
    if main:
        metrics_lib.write_training_plot(run.run_dir)
    summary = {"status": stopped, "step": done, "run_dir": run.run_dir, "checkpoints": ckpt_dir,
               "skipped": meta["skipped"], "last_eval": last_eval}
    if stopped == "preempted":
        _say(f"SIGTERM: saved checkpoint step {done} in {ckpt_dir}; rerun the same command to resume")
    return summary


def main(config_path: str | None, overrides: list[str]) -> int:
    cfg = config_lib.load_config(config_path, overrides)
    summary = train(cfg)
    import jax

    if jax.process_index() == 0:
        d = summary["run_dir"]
        print(f"{summary['status']} at step {summary['step']}; skipped non-finite steps: {summary['skipped']}")
        print(f"metrics:     {os.path.join(d, 'metrics.jsonl')} (TensorBoard: tensorboard --logdir {os.path.join(d, 'tb')})")
        print(f"checkpoints: {summary['checkpoints']}")
        print(f"config:      {os.path.join(d, 'config.yaml')}")
        print(f"plots:       {os.path.join(d, 'plots', 'training.png')}")
        sys.stdout.flush()
    return 0
