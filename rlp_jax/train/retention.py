"""Which checkpoints a run keeps, and what the last good one is.

Every checkpoint's meta records `good`: false once the run has diverged (the held-out NLL
rose more than `run.max_eval_rise` above its best; the step guard never lets a bad step into
the state, so it needs no mark). Orbax would keep the newest `keep` whatever they hold, and a
divergence that outlasts `keep` checkpoints would leave only collapsed ones. The rule here:

  * the newest `keep` good checkpoints are kept; a checkpoint that is not good never counts;
  * not-good checkpoints older than the newest good one are deleted (the run recovered);
    of those after it, the newest `keep` are kept, to look at;
  * only complete checkpoints are counted: a save still being written is neither counted
    nor deleted, so the last complete good checkpoint is never deleted, even if that save
    then fails (a full disk);
  * `good` is assumed at save; a checkpoint is *confirmed* once the first held-out eval at
    or after its step passes, and the newest confirmed one is never deleted, whatever
    `keep` (with `keep × checkpoint_every < eval_every` it would otherwise rotate out
    before the eval that finds a divergence). If that eval fails instead, the checkpoints
    waiting for it are *demoted*: not good, so the last good one is the confirmed one.
    Each checkpoint's meta records `confirmed` (the newest confirmed step when it was
    saved), so a reader demotes them too (`demoted`).
"""

from __future__ import annotations

import math

from rlp_jax.errors import UserError
from rlp_jax.train import checkpoint


def to_delete(good: dict[int, bool], keep: int, confirmed: int | None = None) -> list[int]:
    """The steps the rule above deletes, given each complete checkpoint's `good` flag and
    the newest confirmed step."""
    steps = sorted(good)
    good_steps = [s for s in steps if good[s]]
    newest_good = good_steps[-1] if good_steps else -1
    kept = set(good_steps[-keep:]) | set([s for s in steps if not good[s] and s > newest_good][-keep:])
    if confirmed is not None and good.get(confirmed):
        kept.add(confirmed)
    return [s for s in steps if s not in kept]


def demoted(metas: dict) -> dict[int, int]:
    """`{step: later step}`: good checkpoints that a later not-good one shows were still
    unconfirmed when the run diverged (newer than the `confirmed` step it records). Metas
    without `confirmed` (older runs) and unreadable ones (strings) demote nothing."""
    out: dict[int, int] = {}
    for bad in sorted(metas):
        meta = metas[bad]
        if not isinstance(meta, dict) or meta.get("good", True) or "confirmed" not in meta:
            continue
        floor = -1 if meta["confirmed"] is None else meta["confirmed"]
        for s, m in metas.items():
            if floor < s < bad and isinstance(m, dict) and m.get("good", True):
                out.setdefault(s, bad)
    return out


def last_good(good: dict[int, bool]) -> int | None:
    return max((s for s, g in good.items() if g), default=None)


def judge_heldout(meta: dict, nll: float | None, step: int, max_rise: float) -> str | None:
    """Update `meta`'s `good`, `best_eval_nll` and `bad_reason` from step `step`'s held-out NLL;
    the reason when the run has diverged: NLL not finite, or more than `max_rise` above its
    best (a slow divergence whose single steps all pass the guard). 0 disables the check."""
    best = meta.get("best_eval_nll")
    if not max_rise or nll is None:
        return None
    if math.isfinite(nll) and (best is None or nll <= best + max_rise):
        meta.update(good=True, best_eval_nll=nll if best is None else min(best, nll))
        meta.pop("bad_reason", None)
        return None
    why = (f"diverged: held-out NLL {nll:.4g} at step {step}" + (f", best {best:.4g}" if best is not None else "")
           + f" (run.max_eval_rise={max_rise:g})")
    meta.update(good=False, bad_reason=why)
    return why


class Ledger:
    """A writer's checkpoints: each one's `good` flag, which are confirmed, the save in
    flight, and the rule above.

    `save` waits for the previous save (Orbax would too), so a write error names the step it
    belongs to; then prunes, then starts the next save. `judged` takes each held-out
    verdict. `close` waits, prunes and closes.
    """

    def __init__(self, manager, good: dict[int, bool], keep: int, confirmed: int | None = None):
        self.manager, self.good, self.keep, self.confirmed = manager, dict(good), keep, confirmed
        self.in_flight: int | None = None
        self.waiting = {s for s, g in self.good.items() if g and (confirmed is None or s > confirmed)}
        self.verdict: tuple[int, bool] | None = None  # the last held-out eval: (step, passed)

    def last_good(self) -> int | None:
        """The newest good checkpoint, counting the one being written."""
        return last_good(self.good)

    def judged(self, step: int, passed: bool) -> list[int]:
        """A held-out eval at `step` passed or not: the good checkpoints saved since the
        previous one are confirmed, or demoted (returned)."""
        waiting, self.waiting, self.verdict = sorted(self.waiting), set(), (step, passed)
        if passed:
            self.confirmed = waiting[-1] if waiting else self.confirmed
            return []
        for s in waiting:
            self.good[s] = False
        return waiting

    def save(self, step: int, state, iterator, meta: dict) -> None:
        self._settle()
        good = bool(meta.get("good", True))
        if good and self.verdict == (step, True):  # the eval at this very step passed
            self.confirmed = step
        try:
            checkpoint.save(self.manager, step, state, iterator, dict(meta, confirmed=self.confirmed), force=True)
        except Exception as err:
            raise self._write_error(step, err) from None
        self.good[step] = good
        if good and self.confirmed != step:
            self.waiting.add(step)
        self.in_flight = step

    def set_aside(self, steps: list[int], why: str) -> list[str]:
        """Rename `steps` (demoted ones a stopping run will not outlive) as a reader would."""
        self._settle()
        steps = [s for s in steps if s in self.good]
        for s in steps:
            del self.good[s]
        return checkpoint.set_aside(self.manager, [(s, why) for s in steps]) if steps else []

    def close(self) -> None:
        try:
            self._settle()
        finally:
            self.manager.close()

    def _settle(self) -> None:
        step, self.in_flight = self.in_flight, None
        try:
            self.manager.wait_until_finished()
        except Exception as err:
            raise self._write_error(step, err) from None
        for s in to_delete(self.good, self.keep, self.confirmed):
            self.manager.delete(s)
            del self.good[s]
            self.waiting.discard(s)

    def _write_error(self, step, err) -> UserError:
        self.good.pop(step, None)
        last = last_good({s: g for s, g in self.good.items() if s != step})
        where = f"the last good checkpoint is step {last}" if last is not None else "no checkpoint was completed"
        what = f"checkpoint {step}" if step is not None else "a checkpoint"
        return UserError(f"cannot write {what} in {self.manager.directory}: {checkpoint.reason(err)}; "
                         f"{where}; rerun to resume from it once that is fixed")
