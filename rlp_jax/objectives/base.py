"""The one interface every training objective implements: rollout → reward → loss.

`rlp_jax.train.step` turns any `Objective` into one compiled step:

    experience = rollout(θ_old, φ, window, key)          sample (or nothing, for NTP)
    reward     = reward(experience, window)              jitted, or on the host (RPT)
    batch, m   = loss_batch(experience, reward, window, ref)  advantages and constants
    loss, m    = loss(θ, minibatch)                      what the optimizer differentiates

then `updates_per_rollout × minibatches` optimizer steps, each followed by the EMA step;
each step's gradient is averaged over `grad_accumulation` microbatches of its minibatch.
An objective whose reward needs the host (RPT compares decoded text) is a
`HostRewardObjective` and implements `collect`, which drives the compiled rollout from the host (as often as it
needs: RPT refills groups without signal) and returns experience and reward; the update
is then compiled as a second half.
"""

from __future__ import annotations

import abc
from typing import Any


class Objective(abc.ABC):
    """Subclasses are frozen dataclasses holding their configs (static in compiled code)."""

    name: str = ""
    needs_reference: bool = False  # True: the state keeps θ_0 as a fixed KL reference
    host_reward: bool = False  # True for a `HostRewardObjective`
    updates_per_rollout: int = 1
    minibatches: int = 1
    grad_accumulation: int = 1

    @abc.abstractmethod
    def rollout(self, params, teacher, window, key) -> Any:
        """Experience from the frozen policy θ_old (`params`) and the EMA teacher φ."""

    @abc.abstractmethod
    def reward(self, experience, window) -> Any:
        """Rewards of the experience; a JAX function unless `host_reward`."""

    @abc.abstractmethod
    def loss_batch(self, experience, reward, window, reference) -> tuple[Any, dict]:
        """`(batch, metrics)`: what `loss` reads (constants: advantages, old log-probs).
        `reference` is the KL reference policy: the fixed θ_0 when the state keeps one
        (kl_beta > 0), else the EMA teacher φ."""

    @abc.abstractmethod
    def loss(self, params, batch) -> tuple[Any, dict]:
        """`(loss, metrics)`; `metrics` must contain "loss"."""

    def minibatch(self, batch, index, count: int):
        """Part `index` of `count` of the batch (each optimizer step or microbatch reads one)."""
        return batch

    def combine_metrics(self, stacked: dict) -> dict:
        """Metrics of `grad_accumulation` microbatches (stacked `[n]`) as the whole batch's."""
        return {name: value.mean() for name, value in stacked.items()}


class HostRewardObjective(Objective):
    """An objective whose reward runs on the host between two compiled halves: `collect`
    drives the compiled rollout (as often as it needs) and returns experience and reward."""

    host_reward = True

    @abc.abstractmethod
    def rollout(self, params, teacher, window, key, plan=None) -> Any:
        """Experience at the positions `plan` that `collect` chose on the host."""

    @abc.abstractmethod
    def collect(self, roll, frozen, window, step: int, seed) -> tuple[Any, Any]:
        """`(experience, reward)` of one step. `roll(attempt, plan)` runs the compiled
        `rollout(..., plan)` with the step's key folded with `attempt`; `frozen =
        (params, model_cfg)` is a fixed model (RPT's proxy); `seed` seeds host draws."""
