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
    then fails (a full disk).
"""

from __future__ import annotations

import math

from rlp_jax.errors import UserError
from rlp_jax.train import checkpoint


def to_delete(good: dict[int, bool], keep: int) -> list[int]:
    """The steps the rule above deletes, given each complete checkpoint's `good` flag."""
    steps = sorted(good)
    good_steps = [s for s in steps if good[s]]
    newest_good = good_steps[-1] if good_steps else -1
    kept = set(good_steps[-keep:]) | set([s for s in steps if not good[s] and s > newest_good][-keep:])
    return [s for s in steps if s not in kept]


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
    """A writer's checkpoints: each one's `good` flag, the save in flight, and the rule above.

    `save` waits for the previous save (Orbax would too), so a write error names the step it
    belongs to; then prunes, then starts the next save. `close` waits, prunes and closes.
    """

    def __init__(self, manager, good: dict[int, bool], keep: int):
        self.manager, self.good, self.keep = manager, dict(good), keep
        self.in_flight: int | None = None

    def last_good(self) -> int | None:
        """The newest good checkpoint, counting the one being written."""
        return last_good(self.good)

    def save(self, step: int, state, iterator, meta: dict) -> None:
        self._settle()
        try:
            checkpoint.save(self.manager, step, state, iterator, meta, force=True)
        except Exception as err:
            raise self._write_error(step, err) from None
        self.good[step] = bool(meta.get("good", True))
        self.in_flight = step

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
        for s in to_delete(self.good, self.keep):
            self.manager.delete(s)
            del self.good[s]

    def _write_error(self, step, err) -> UserError:
        self.good.pop(step, None)
        last = last_good({s: g for s, g in self.good.items() if s != step})
        where = f"the last good checkpoint is step {last}" if last is not None else "no checkpoint was completed"
        what = f"checkpoint {step}" if step is not None else "a checkpoint"
        return UserError(f"cannot write {what} in {self.manager.directory}: {checkpoint.reason(err)}; "
                         f"{where}; rerun to resume from it once that is fixed")
