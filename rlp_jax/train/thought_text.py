"""Sample thoughts as text: one row per example (`thoughts.jsonl` during training, `rlp-jax
eval --show`) and the one way an example is printed, so both read the same."""

from __future__ import annotations

import json
import math

import numpy as np

FIELDS = ("step", "t", "context", "thought", "target", "prediction", "reward", "s_pred", "s_ema")


def decode(tokenizer, ids) -> str:
    """Text of token ids; without a tokenizer (synthetic data) the ids themselves."""
    ids = [int(i) for i in ids]
    return tokenizer.decode(ids) if tokenizer is not None else "[" + " ".join(map(str, ids)) + "]"


def _number(value):
    value = float(value)
    return value if math.isfinite(value) else str(value)  # JSON has no NaN or infinity


def rows(samples: dict, tokenizer, step: int | None) -> list[dict]:
    """Rows of the valid examples of `thought_samples.sample_thoughts`' host output."""
    out = []
    for i in np.flatnonzero(np.asarray(samples["valid"])):
        context = np.asarray(samples["context"][i])[np.asarray(samples["context_mask"][i], bool)]
        thought = np.asarray(samples["thought"][i])[: int(samples["length"][i])]
        out.append({"step": step, "t": int(samples["t"][i]), "context": decode(tokenizer, context),
                    "thought": decode(tokenizer, thought), "target": decode(tokenizer, [samples["target"][i]]),
                    "prediction": decode(tokenizer, [samples["prediction"][i]]),
                    "reward": _number(samples["reward"][i]), "s_pred": _number(samples["s_pred"][i]),
                    "s_ema": _number(samples["s_ema"][i])})
    return out


def format_example(row: dict, baseline: str = "S_ema") -> str:
    """A few readable lines; texts are quoted so that spaces and newlines show. `baseline`
    names what the reward is measured against (`rlp-jax eval`: the model's own no-think)."""
    quote = lambda text: json.dumps(text, ensure_ascii=False)  # noqa: E731
    where = f"step {row['step']}, t={row['t']}" if row.get("step") is not None else f"t={row['t']}"
    right = "right" if row["prediction"] == row["target"] else "wrong"
    return "\n".join([
        f"[{where}] reward {_signed(row['reward'])} = S_pred {_signed(row['s_pred'])} - {baseline} "
        f"{_signed(row['s_ema'])}",
        f"  context:    {quote(row['context'])}",
        f"  thought:    {quote(row['thought'])}",
        f"  target:     {quote(row['target'])}",
        f"  prediction: {quote(row['prediction'])} ({right})"])


def _signed(value) -> str:
    return f"{value:+.4f}" if isinstance(value, float) else str(value)
