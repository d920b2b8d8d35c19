"""Log-probs of chosen tokens and entropies, read off the vocabulary head in row chunks.

Every loss here needs, per token, only log p(target) and the entropy of p — two numbers —
yet the plain route materialises float32 logits `[tokens, vocab]` several times over
(logits, log-softmax, exp, and their cotangents in the backward pass): for Qwen3's 152K
vocabulary and a few thousand branch tokens, gigabytes. `target_scores` applies the head
`cfg.head_chunk` rows at a time under `jax.checkpoint`, so at most one chunk's logits are
alive in either pass; the backward pass recomputes them (one extra head matmul).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rlp_jax.model import transformer as model_lib
from rlp_jax.model.config import ModelConfig


def tempered_logp(logits, temperature: float):
    """Log-probabilities of the sampling policy (temperature 0 means greedy: use raw logits)."""
    scale = 1.0 if temperature == 0.0 else 1.0 / temperature
    return jax.nn.log_softmax(logits.astype(jnp.float32) * scale, axis=-1)


BANNED_LOGIT = -1e9  # finite, so that p·log p stays 0 (not 0·inf) for a banned token


def ban_token(logits, token_id: int, where=True):
    """float32 logits with `token_id` made impossible where `where` holds (the rest of the
    distribution renormalises): how a thought is kept from ending before its first token."""
    hit = (jnp.arange(logits.shape[-1]) == token_id) & jnp.asarray(where)[..., None]
    return jnp.where(hit, BANNED_LOGIT, logits.astype(jnp.float32))


def logit_scores(logits, targets, temperature: float = 1.0, banned: int = -1, banned_at=True):
    """`(logp of targets, entropy)` of softmax(logits / temperature), from logits `[..., V]`,
    with token `banned` (if >= 0) made impossible where `banned_at` (shaped like `targets`)."""
    if banned >= 0:
        logits = ban_token(logits, banned, banned_at)
    logp = tempered_logp(logits, temperature)
    picked = jnp.take_along_axis(logp, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return picked, -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def _scores(params, cfg: ModelConfig, hidden, targets, temperature: float, banned: int = -1, banned_at=True):
    return logit_scores(model_lib.head_logits(params, cfg, hidden), targets, temperature, banned, banned_at)


def target_scores(params, cfg: ModelConfig, hidden, targets, temperature: float = 1.0, banned: int = -1,
                  banned_at=None):
    """`(logp, entropy)`, both shaped like `targets`, of softmax(head(hidden) / temperature)
    (token `banned`, if >= 0, made impossible where `banned_at`, default everywhere).

    `hidden [..., d_model]` are final-norm states from a `head=False` model call.
    """
    shape = targets.shape
    rows = hidden.reshape(-1, hidden.shape[-1])
    flat_targets = targets.reshape(-1)
    flat_banned = jnp.broadcast_to(True if banned_at is None else banned_at, shape).reshape(-1)
    n, chunk = flat_targets.shape[0], cfg.head_chunk
    if not chunk or n <= chunk:
        picked, entropy = _scores(params, cfg, rows, flat_targets, temperature, banned, flat_banned)
        return picked.reshape(shape), entropy.reshape(shape)
    pad = -n % chunk
    rows = jnp.pad(rows, ((0, pad), (0, 0))).reshape(-1, chunk, rows.shape[-1])
    flat_targets = jnp.pad(flat_targets, (0, pad)).reshape(-1, chunk)
    flat_banned = jnp.pad(flat_banned, (0, pad)).reshape(-1, chunk)
    score_chunk = jax.checkpoint(_scores, static_argnums=(1, 4, 5))
    picked, entropy = jax.lax.map(lambda xs: score_chunk(params, cfg, xs[0], xs[1], temperature, banned, xs[2]),
                                  (rows, flat_targets, flat_banned))
    return picked.reshape(-1)[:n].reshape(shape), entropy.reshape(-1)[:n].reshape(shape)


TOP_K_ENTROPY = 16


def top_k_entropy(logits, k: int = TOP_K_ENTROPY):
    """Entropy (nats) of the renormalised top-k next-token distribution, `[...]` (RPT's
    difficulty measure: a proxy model's uncertainty among its k best guesses)."""
    top = jax.lax.top_k(logits.astype(jnp.float32), k)[0]
    logp = jax.nn.log_softmax(top, axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)
