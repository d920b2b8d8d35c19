"""Which (window, position) pairs an RPT step rolls out, chosen on the host, and dynamic
sampling's refill of groups without signal (Dong et al. 2025, §3.3).

Why slots, one group each. The paper filters positions *before* training: a position whose
fixed proxy's top-16 entropy is at or below the threshold is simply not in the data. With
static shapes we emulate that by drawing the step's S = B·K groups uniformly, without
replacement, among the eligible pairs of the whole batch (entropy above the threshold, at
least `min_context` tokens in, `lookahead` tokens before the window's end). A window with
few hard positions therefore leaves its share to the others ("filling from other
windows"). Each slot is one row `[T]` (its window gathered) with one position and G
completions, so the prefix-shared rollout keeps its layout. Only when the whole batch has
fewer than S eligible pairs do slots stay empty: they are marked invalid, decode nothing
(they start finished) and are left out of the loss mean. Choosing on the host costs one
extra compiled half (the proxy's entropy) but no rollout for filtered positions.

Dynamic sampling (from step `rpt.dynamic_sampling_from`): after the host reward, slots
whose G rewards are all equal are emptied and refilled from further rollouts of newly
drawn pairs of the same batch, at most `rpt.max_refills` of them; what stays empty after
that is invalid, as above.
"""

from __future__ import annotations

import numpy as np


def eligible_positions(entropy, threshold: float, min_context: int, lookahead: int) -> np.ndarray:
    """`[B, T]` True where position t may be trained on: proxy entropy above the threshold,
    `min_context <= t <= T - lookahead` (so the ground truth has `lookahead` tokens in view)."""
    entropy = np.asarray(entropy)
    t = np.arange(entropy.shape[1])
    in_range = (t >= min_context) & (t <= entropy.shape[1] - lookahead)
    return (entropy > threshold) & in_range[None, :]


def candidate_positions(window_len: int, min_context: int, lookahead: int) -> int:
    """How many positions of a window the filter looks at."""
    return max(0, window_len - lookahead - min_context + 1)


def draw_slots(eligible: np.ndarray, slots: int, rng: np.random.Generator):
    """`(rows [S], t [S], valid [S])`: S pairs drawn uniformly without replacement among the
    eligible ones; slots beyond their number are invalid (row 0, position 0, never rolled out)."""
    rows, ts = np.nonzero(eligible)
    pick = rng.permutation(rows.size)[:slots]
    out_rows, out_t = np.zeros(slots, np.int32), np.zeros(slots, np.int32)
    out_rows[: pick.size], out_t[: pick.size] = rows[pick], ts[pick]
    return out_rows, out_t, np.arange(slots) < pick.size


def informative(rewards: np.ndarray, valid: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """`[S]` valid slots whose G rewards `[S, G]` are not all equal."""
    return valid & (rewards.max(-1) - rewards.min(-1) > tol)


def refill(batch: dict, more: dict) -> tuple[dict, int]:
    """Copy `more`'s informative slots into `batch`'s invalid ones. Both are dicts of host
    arrays with slots first, holding at least `valid [S]` and `rewards [S, G]`; returns the
    updated batch and how many slots were filled."""
    holes = np.flatnonzero(~batch["valid"])
    found = np.flatnonzero(informative(more["rewards"], more["valid"]))
    n = min(holes.size, found.size)
    out = {name: np.array(value, copy=True) for name, value in batch.items()}
    for name in out:
        out[name][holes[:n]] = more[name][found[:n]]
    return out, n
