"""`filter_logits` (top-k by min of lax.top_k, nucleus by bisection) equals a sort-based reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlp_jax.rollout.sampling import filter_logits


def _sorted_reference(logits: np.ndarray, top_k: int, top_p: float) -> np.ndarray:
    """The textbook definition on one row: sort, keep the top k, then the smallest prefix of
    the renormalised distribution whose mass reaches top_p; ties at a cutoff are kept."""
    out = logits.astype(np.float64).copy()
    if top_k and top_k < len(out):
        kth = np.sort(out)[::-1][top_k - 1]
        out[out < kth] = -np.inf
    if top_p < 1.0:
        probs = np.exp(out - out.max())
        probs /= probs.sum()
        order = np.argsort(-probs, kind="stable")
        before = np.cumsum(probs[order]) - probs[order]
        cutoff = probs[order][before < top_p].min()
        out[probs < cutoff] = -np.inf
    return out


@pytest.mark.parametrize("top_k,top_p", [(5, 1.0), (0, 0.9), (0, 0.3), (20, 0.95), (1, 0.5), (0, 0.999)])
def test_filter_equals_sorted_reference(top_k, top_p):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(64, 257)).astype(np.float32) * 3
    logits[:8, :40] = np.round(logits[:8, :40])  # rows with many exact ties
    logits[8] = 0.0  # a uniform row: every token tied
    got = np.asarray(jax.jit(filter_logits, static_argnums=(1, 2))(jnp.asarray(logits), top_k, top_p))
    for row in range(logits.shape[0]):
        want = _sorted_reference(logits[row], top_k, top_p)
        np.testing.assert_array_equal(np.isfinite(got[row]), np.isfinite(want), err_msg=f"row {row}")
        np.testing.assert_array_equal(got[row][np.isfinite(got[row])], logits[row][np.isfinite(want)])
    kept = np.isfinite(got).sum(axis=1)
    assert kept[8] == logits.shape[1]  # all tied: all kept
    assert kept.min() >= 1 and np.median(kept) < logits.shape[1]


def test_filter_is_identity_when_off():
    logits = jax.random.normal(jax.random.key(0), (3, 50))
    np.testing.assert_array_equal(filter_logits(logits, 0, 1.0), logits)
    np.testing.assert_array_equal(filter_logits(logits, 50, 1.0), logits)
