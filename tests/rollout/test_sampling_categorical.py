"""`sampling.categorical` (block, then member) draws each id with probability softmax(logits)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlp_jax.rollout.sampling import SAMPLE_BLOCK, categorical

ROWS, CALLS = 20_000, 10  # 200k draws per case


@pytest.mark.parametrize("vocab", [37, SAMPLE_BLOCK * 2, SAMPLE_BLOCK * 2 + 88])
def test_frequencies_match_softmax(vocab):
    rng = np.random.default_rng(vocab)
    logits = rng.normal(size=vocab).astype(np.float32) * 2.0
    logits[rng.choice(vocab, vocab // 5, replace=False)] = -np.inf  # filtered ids
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()

    draw = jax.jit(lambda key: categorical(key, jnp.broadcast_to(jnp.asarray(logits), (ROWS, vocab))))
    counts = np.zeros(vocab)
    for i in range(CALLS):
        ids = np.asarray(draw(jax.random.key(i)))
        assert ids.dtype == np.int32 and ids.min() >= 0 and ids.max() < vocab
        counts += np.bincount(ids, minlength=vocab)
    n = ROWS * CALLS
    assert counts[probs == 0].sum() == 0
    z = np.abs(counts / n - probs) / np.sqrt(probs * (1 - probs) / n + 1e-12)
    assert z.max() < 5.0, (z.max(), int(z.argmax()))


def test_rows_are_independent_and_shapes_are_kept():
    logits = jnp.zeros((3, 4, 1000))  # uniform: rows must not all draw the same id
    ids = categorical(jax.random.key(0), logits)
    assert ids.shape == (3, 4)
    assert len(np.unique(np.asarray(ids))) > 6
    np.testing.assert_array_equal(ids, categorical(jax.random.key(0), logits))
