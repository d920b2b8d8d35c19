"""RPT's prefix-matching reward (docs/algorithms.md), computed on the host from decoded text.

The model thinks, closes its thought with `</think>`, then writes a prediction y: the last
`\\boxed{...}` (or the text between configurable answer tags) *after* the close of the
thought (paper §3.3, App. D); no close, or an answer only inside the thought, earns 0.
Reward 1 iff the UTF-8 bytes of y equal the first l bytes of
the real continuation x_≥t AND l ends on a token boundary of that continuation. Nothing
is stripped: " Paris" and "Paris" are different predictions, as they are different tokens.
"""

from __future__ import annotations

from typing import Sequence


def extract_answer(text: str, tags: tuple[str, str] | None = None, after: str = "") -> str | None:
    """The answer after a thought: the last `\\boxed{...}` (braces balanced), or the text
    inside the last `open ... close` tag pair when `tags` is given; None if absent or
    malformed (unclosed). With `after` (e.g. "</think>"), only the text after its last
    occurrence counts, and a text without it has no answer."""
    if after:
        cut = text.rfind(after)
        if cut < 0:
            return None
        text = text[cut + len(after):]
    if tags is not None:
        open_tag, close_tag = tags
        start = text.rfind(open_tag)
        if start < 0:
            return None
        end = text.find(close_tag, start + len(open_tag))
        return None if end < 0 else text[start + len(open_tag):end]
    marker = "\\boxed{"
    start = text.rfind(marker)
    if start < 0:
        return None
    depth, i = 1, start + len(marker)
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + len(marker):i]
        i += 1
    return None


def continuation_boundaries(tokenizer, context_ids: Sequence[int], continuation_ids: Sequence[int],
                            max_bytes: int | None = None):
    """`(continuation_bytes, boundaries)`: the continuation's UTF-8 bytes as they appear after
    the context, and the byte offsets where its tokens end (paper eq. 3: L_gt, the cumulative
    byte lengths of the ground truth's tokens). The continuation may run to the document's
    end; `max_bytes` (the longest prediction) stops the boundary search early, since no
    longer prefix can match.

    Decoding in context keeps leading spaces that tokenizers drop at the start of a text;
    a token that ends inside a multi-byte character has no boundary (its prefix decodes
    to a replacement character, which is not a prefix of the real text).
    """
    context = list(context_ids)
    base = tokenizer.decode(context)
    full = tokenizer.decode(context + list(continuation_ids))
    if not full.startswith(base):
        base = ""  # context decodes differently alone; fall back to the raw continuation
        context = []
        full = tokenizer.decode(list(continuation_ids))
    continuation = full[len(base):]
    boundaries = []
    for k in range(1, len(continuation_ids) + 1):
        text = tokenizer.decode(context + list(continuation_ids[:k]))
        if text.startswith(base) and full.startswith(text) and "\ufffd" not in text[len(base):]:
            boundaries.append(len(text[len(base):].encode("utf-8")))
            if max_bytes is not None and boundaries[-1] >= max_bytes:
                break
    return continuation.encode("utf-8"), sorted(set(b for b in boundaries if b > 0))


def prefix_match_reward(prediction: str | None, continuation: bytes, boundaries: Sequence[int]) -> float:
    """1.0 iff `prediction` is a byte prefix of `continuation` ending on a token boundary."""
    if not prediction:
        return 0.0
    predicted = prediction.encode("utf-8")
    return float(len(predicted) in set(boundaries) and continuation.startswith(predicted))


def rpt_reward(completion: str, tokenizer, context_ids, continuation_ids, tags=None, after: str = "") -> float:
    """Extract the answer from a thought + answer `completion` and score it."""
    continuation, boundaries = continuation_boundaries(tokenizer, context_ids, continuation_ids)
    return prefix_match_reward(extract_answer(completion, tags, after), continuation, boundaries)
