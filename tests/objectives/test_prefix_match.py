"""RPT prefix-matching reward: multi-token predictions, spaces, in-token prefixes, UTF-8, bad answers."""

import pytest
from byte_bpe import tiny_byte_bpe

from rlp_jax.objectives.prefix_match import continuation_boundaries, extract_answer, prefix_match_reward, rpt_reward


@pytest.fixture(scope="module")
def tokenizer():
    """Byte-level BPE with ' Paris', ' is', ' the', ' capital', 'é', '日本', ' café' merged."""
    return tiny_byte_bpe([" Paris", " is", " the", " capital", "é", "日本", " café"])


def test_extract_answer():
    assert extract_answer("think... \\boxed{ Paris}") == " Paris"
    assert extract_answer("\\boxed{a} then \\boxed{b{c}d}") == "b{c}d"
    assert extract_answer("no answer here") is None
    assert extract_answer("\\boxed{unclosed") is None
    assert extract_answer("<answer> is</answer>", tags=("<answer>", "</answer>")) == " is"
    assert extract_answer("<answer> is", tags=("<answer>", "</answer>")) is None


def test_answer_counts_only_after_the_thought():
    assert extract_answer("no close \\boxed{ size}") == " size"  # anywhere, without `after`
    assert extract_answer("no close \\boxed{ size}", after="</think>") is None  # no </think>: no answer
    assert extract_answer("\\boxed{ a}</think> then", after="</think>") is None  # boxed inside the thought
    assert extract_answer("\\boxed{ a}</think>\\boxed{ b}", after="</think>") == " b"
    assert extract_answer("x</think><answer> c</answer>", ("<answer>", "</answer>"), "</think>") == " c"


def test_boundaries_stop_at_the_longest_prediction(tokenizer):
    data, boundaries = continuation_boundaries(tokenizer, [], tokenizer.encode(" is Paris."), max_bytes=3)
    assert data == b" is Paris." and boundaries == [3]


def test_multi_token_prediction_and_spaces(tokenizer):
    context = tokenizer.encode("The capital of France")
    cont = tokenizer.encode(" is Paris.")
    data, boundaries = continuation_boundaries(tokenizer, context, cont)
    assert data == b" is Paris."
    assert boundaries == [3, 9, 10]  # " is" | " Paris" | "."
    assert prefix_match_reward(" is", data, boundaries) == 1.0
    assert prefix_match_reward(" is Paris", data, boundaries) == 1.0  # two tokens
    assert prefix_match_reward(" is Paris.", data, boundaries) == 1.0
    assert prefix_match_reward("is", data, boundaries) == 0.0  # leading space missing
    assert prefix_match_reward(" is ", data, boundaries) == 0.0  # trailing space: not a boundary
    assert prefix_match_reward(" is Par", data, boundaries) == 0.0  # stops inside a token
    assert prefix_match_reward(" was", data, boundaries) == 0.0


def test_multibyte_utf8_tokens(tokenizer):
    context = tokenizer.encode("Un")
    cont = tokenizer.encode(" café日本")
    assert [tokenizer.decode([t]) for t in cont] == [" caf", "é", "日本"]  # 'é' 2 bytes, '日本' 6
    data, boundaries = continuation_boundaries(tokenizer, context, cont)
    assert data == " café日本".encode("utf-8")
    assert boundaries == [4, 6, 12]
    assert prefix_match_reward(" café", data, boundaries) == 1.0
    assert prefix_match_reward(" café日本", data, boundaries) == 1.0
    assert prefix_match_reward(" café日", data, boundaries) == 0.0  # inside the '日本' token
    assert prefix_match_reward(" ca", data, boundaries) == 0.0


def test_token_ending_inside_a_character_is_no_boundary(tokenizer):
    # "ü" is not a merged token: its two bytes are two tokens; the first ends mid-character.
    cont = tokenizer.encode("ü!")
    assert len(cont) == 3
    data, boundaries = continuation_boundaries(tokenizer, [], cont)
    assert boundaries == [2, 3]


def test_missing_or_malformed_answers_score_zero(tokenizer):
    context, cont = tokenizer.encode("The"), tokenizer.encode(" capital")
    assert rpt_reward("I think it is \\boxed{ capital}", tokenizer, context, cont) == 1.0
    assert rpt_reward("I think it is \\boxed{ capital", tokenizer, context, cont) == 0.0
    assert rpt_reward("no box at all", tokenizer, context, cont) == 0.0
    assert rpt_reward("\\boxed{}", tokenizer, context, cont) == 0.0
    assert rpt_reward("\\boxed{ capital}", tokenizer, context, cont, after="</think>") == 0.0
    assert rpt_reward("hm</think>\\boxed{ capital}", tokenizer, context, cont, after="</think>") == 1.0
