"""A small world where thinking provably helps: sums of digits modulo 10.

Each document is one problem, `3142=0`: n random digits, then their sum mod 10. A
small model reads the answer off the digits only with difficulty in one forward pass, but
easily step by step: the running sums 3, 4, 8, 0, each the previous one plus the next
digit, the last of them the answer. Web text sometimes shows its work, and sometimes only
chatter (digits are single tokens: the tokenizer splits them):

    plain    3142=0
    worked   3142=<think>33144820</think>0      (each digit, then the sum so far)
    chatter  3142=<think>hmm ok</think>0

`builtin:sums_worked` mixes the three (half plain; of the rest half worked, half chatter):
the corpus of a next-token warm-up. `builtin:sums_boxed` is the same mix with the answer of a
thought-out problem written as RPT's completions end, `3142=<think>33144820</think>\\boxed{0}`:
the warm-up of the RPT job (configs/tiny_sums_rpt.yaml), which rewards a boxed answer.
`builtin:sums` holds plain problems only: what RLP trains and is evaluated on, so no
thought, scratchpad or answer is ever handed to it — the policy writes its own thoughts.
Documents are drawn from a seed: the same everywhere.
"""

from __future__ import annotations

import random

from rlp_jax.data.corpus import Document

DIGITS = 4
CHATTER = ("hmm", "ok", "so", "well", "right", "let me see")
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def sums_documents(num_docs: int, seed: int = 0, mixed: bool = False, digits: int = DIGITS,
                   boxed: bool = False) -> list[Document]:
    """`num_docs` problems; `mixed`: half plain, a quarter worked, a quarter chatter;
    `boxed`: a thought-out answer in \\boxed{} (RPT's completion format)."""
    rng = random.Random(seed)
    name = ("sums_boxed" if boxed else "sums_worked") if mixed else "sums"
    return [Document(_problem(rng, mixed, digits, boxed), f"{name}:{i}") for i in range(num_docs)]


def _problem(rng: random.Random, mixed: bool, digits: int, boxed: bool) -> str:
    xs = [rng.randrange(10) for _ in range(digits)]
    running = [sum(xs[: i + 1]) % 10 for i in range(digits)]
    question, answer = "".join(map(str, xs)) + "=", str(running[-1])
    kind = rng.random() if mixed else 0.0
    if kind < 0.5:
        return question + answer
    if kind < 0.75:
        work = "".join(f"{x}{s}" for x, s in zip(xs, running))
    else:
        work = " ".join(rng.choice(CHATTER) for _ in range(rng.randint(1, 2)))
    if boxed:
        answer = f"\\boxed{{{answer}}}"
    return f"{question}{THINK_OPEN}{work}{THINK_CLOSE}{answer}"
