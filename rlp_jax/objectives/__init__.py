"""Training objectives (RLP, RPT, NTP): rollout → reward → loss, behind one interface
(`base.Objective`); `make_objective` builds the one a training config names."""

from __future__ import annotations

OBJECTIVES = ("rlp", "ntp", "rpt")


def make_objective(name: str, model, rollout=None, rlp=None, rpt=None, tokenizer=None):
    """The objective called `name`, with its own config section (and the shared rollout)."""
    if name == "rlp":
        from rlp_jax.objectives.rlp import RLP

        return RLP(model, rollout, rlp)
    if name == "rpt":
        from rlp_jax.objectives.rpt import RPT, completion_config

        return RPT(model, completion_config(rollout, tokenizer, rpt), rpt, tokenizer)
    if name == "ntp":
        from rlp_jax.objectives.ntp import NTP

        return NTP(model)
    raise ValueError(f"unknown objective {name!r} (choose one of {OBJECTIVES})")
