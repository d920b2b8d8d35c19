"""The next-token baseline: plain teacher-forced cross-entropy on the same windows, with
the same state, optimizer and EMA schedule as RLP, so the objectives are compared with
everything else held equal (continued pre-training, "CPT")."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from rlp_jax.model import vocab_scores
from rlp_jax.model.config import ModelConfig
from rlp_jax.objectives.base import Objective
from rlp_jax.rollout.no_think import window_forward
from rlp_jax.rollout.window import as_window, target_mask

PAD_ID = 0


def ntp_loss(params, cfg: ModelConfig, window):
    """Mean −log p(x_t | x_<t) over the real targets of windows (`Window` or tokens `[B, T]`),
    each document of a packed window attending within itself."""
    w = as_window(window)
    hidden = window_forward(params, cfg, w, head=False)[:, :-1]
    logp, _ = vocab_scores.target_scores(params, cfg, hidden, w.tokens[:, 1:])
    return _masked_nll(logp, w)


def nll_from_logits(logits, window):
    """`ntp_loss` given the teacher-forced logits `[B, T-1, V]` (reuse a forward pass)."""
    w = as_window(window)
    return _masked_nll(vocab_scores.logit_scores(logits, w.tokens[:, 1:])[0], w)


def nll_targets(window):
    """`[B, T-1]` True at the targets `tokens[:, 1:]` that count: not padding (id 0), and
    continuing the document of the token before (`window.target_mask`)."""
    w = as_window(window)
    return target_mask(w)[:, 1:] & (w.tokens[:, 1:] != PAD_ID)


def _masked_nll(target_logp, window):
    """Mean −log p over the targets that count (`nll_targets`)."""
    mask = nll_targets(window).astype(jnp.float32)
    return -jnp.sum(target_logp * mask) / jnp.maximum(jnp.sum(mask), 1.0)


@dataclasses.dataclass(frozen=True)
class NTP(Objective):
    """No rollout and no reward: the batch is the window itself."""

    model: ModelConfig
    name = "ntp"

    def rollout(self, params, teacher, window, key):
        return None

    def reward(self, experience, window):
        return None

    def loss_batch(self, experience, reward, window, teacher):
        return window, {}

    def loss(self, params, batch):
        loss = ntp_loss(params, self.model, batch)
        return loss, {"loss": loss, "nll": loss}
