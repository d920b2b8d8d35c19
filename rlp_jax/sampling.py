"""Token sampling: temperature / top-k / top-p, and prompt → continuation generation.

Generation is one prefill plus a jitted `lax.while_loop` of `decode_step`s over a donated
KV cache; rows stop independently at the end-of-sequence token.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from rlp_jax import model as model_lib
from rlp_jax.model_config import ModelConfig


def sample_logits(logits, key, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0):
    """Sample ids from `logits` [..., V]; temperature 0 means greedy."""
    if temperature == 0.0:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits.astype(jnp.float32) / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if top_p < 1.0:
        sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
        probs = jax.nn.softmax(sorted_logits, axis=-1)
        # Keep the smallest prefix whose mass reaches top_p (always at least one token).
        before = jnp.cumsum(probs, axis=-1) - probs
        cutoff = jnp.min(jnp.where(before < top_p, sorted_logits, jnp.inf), axis=-1, keepdims=True)
        logits = jnp.where(logits < cutoff, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("cfg", "max_new_tokens", "temperature", "top_k", "top_p"))
def generate(params, cfg: ModelConfig, prompt, prompt_valid, key, max_new_tokens: int,
             temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, eos_id: int = -1):
    """Continue left-padded prompts `[B, P]` (`prompt_valid` marks real tokens).

    Returns `(tokens [B, max_new_tokens], lengths [B])`; tokens after a row's EOS are 0.
    """
    batch, prompt_len = prompt.shape
    positions = jnp.maximum(jnp.cumsum(prompt_valid, axis=1) - 1, 0).astype(jnp.int32)
    cache = model_lib.init_cache(cfg, batch, prompt_len + max_new_tokens)
    logits, cache = model_lib.prefill(params, cfg, prompt, cache, positions, prompt_valid)
    next_pos = positions[:, -1] + 1
    out = jnp.zeros((batch, max_new_tokens), jnp.int32)
    done = jnp.zeros((batch,), bool)
    lengths = jnp.zeros((batch,), jnp.int32)

    def body(state):
        step, last_logits, cache, out, done, lengths, key = state
        key, sub = jax.random.split(key)
        token = sample_logits(last_logits, sub, temperature, top_k, top_p)
        token = jnp.where(done, 0, token)
        out = out.at[:, step].set(token)
        lengths = lengths + (~done).astype(jnp.int32)
        done = done | (token == eos_id)
        logits, cache = model_lib.decode_step(params, cfg, token, next_pos + step, cache)
        return step + 1, logits, cache, out, done, lengths, key

    def cond(state):
        step, _, _, _, done, _, _ = state
        return (step < max_new_tokens) & ~jnp.all(done)

    state = (jnp.zeros((), jnp.int32), logits[:, -1], cache, out, done, lengths, key)
    _, _, _, out, _, lengths, _ = jax.lax.while_loop(cond, body, state)
    return out, lengths
