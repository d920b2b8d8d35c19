"""The digit-sum world of the main job: plain problems for RLP, worked reasoning (correct
running sums) and chatter only in the warm-up corpus, digits one token each."""

import re

from rlp_jax.data.sums import THINK_CLOSE, THINK_OPEN, sums_documents

PLAIN = re.compile(r"^(\d{4})=(\d)$")
THOUGHT = re.compile(r"^(\d{4})=<think>(.*)</think>(\d)$")


def _answer(digits: str) -> int:
    return sum(map(int, digits)) % 10


def test_plain_problems_carry_no_thought_and_the_right_answer():
    docs = sums_documents(500, seed=3)
    assert len({d.text for d in docs}) > 400  # drawn, not repeated
    for doc in docs:
        m = PLAIN.match(doc.text)
        assert m and int(m.group(2)) == _answer(m.group(1)) and THINK_OPEN not in doc.text


def test_the_warmup_corpus_mixes_plain_worked_and_chatter_with_correct_work():
    kinds = {"plain": 0, "worked": 0, "chatter": 0}
    for doc in sums_documents(2000, seed=0, mixed=True):
        if PLAIN.match(doc.text):
            kinds["plain"] += 1
            continue
        m = THOUGHT.match(doc.text)
        assert m and int(m.group(3)) == _answer(m.group(1)), doc.text
        digits, work = m.group(1), m.group(2)
        if work.isdigit():
            running = [sum(map(int, digits[: i + 1])) % 10 for i in range(4)]
            assert work == "".join(f"{x}{s}" for x, s in zip(digits, running)), doc.text
            kinds["worked"] += 1
        else:
            assert not any(c.isdigit() for c in work), doc.text
            kinds["chatter"] += 1
    assert 900 < kinds["plain"] < 1100 and 400 < kinds["worked"] < 600 and 400 < kinds["chatter"] < 600
    assert THINK_CLOSE == "</think>"


def test_the_same_seed_gives_the_same_world():
    assert [d.text for d in sums_documents(50, seed=7, mixed=True)] == \
           [d.text for d in sums_documents(50, seed=7, mixed=True)]


def test_the_rpt_warmup_corpus_boxes_thought_out_answers_and_nothing_else():
    boxed = [d.text for d in sums_documents(400, seed=0, mixed=True, boxed=True)]
    worked = [d.text for d in sums_documents(400, seed=0, mixed=True)]
    for b, w in zip(boxed, worked):  # the same problems, thoughts and answers; only the answer's format
        if THINK_OPEN in w:
            head, answer = w.rsplit(THINK_CLOSE, 1)
            assert b == f"{head}{THINK_CLOSE}\\boxed{{{answer}}}", b
        else:
            assert b == w and PLAIN.match(b)
    assert sums_documents(1, mixed=True, boxed=True)[0].source == "sums_boxed:0"
