"""`tokenizer train`: exact encode/decode round trips, reserved ids, thought markers."""

import pytest

from rlp_jax.data import prepare
from rlp_jax.data.builtin import arithmetic_documents
from rlp_jax.data.sp_train import train_sentencepiece
from rlp_jax.errors import UserError
from rlp_jax.tokenizer import load_tokenizer

TEXTS = [d.text for d in arithmetic_documents(60, seed=2)] + [
    "Thou art more lovely and more temperate:\n  Rough winds do shake the darling buds of May,\n",
    "Tabs\tand  double  spaces, trailing space \nünïcödé and emoji 🎭 survive.\n",
]


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_train_encode_decode_round_trip(tmp_path, model_type):
    path = train_sentencepiece(TEXTS, str(tmp_path / "tok"), vocab_size=360, model_type=model_type)
    assert path == str(tmp_path / "tok" / "tokenizer.model")
    tok = load_tokenizer(str(tmp_path / "tok"))
    assert tok.vocab_size == 360
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.token_to_id("<unk>")) == (0, 2, 3, 1)
    for text in TEXTS + ["  leading spaces, unseen chars: ж 中 \u00a0 end", "<think>a step</think> 42"]:
        ids = tok.encode(text)
        assert tok.decode(ids) == text
        assert max(ids) < tok.vocab_size and min(ids) >= 4  # specials never come from text
    # Thought markers and newline are single user-defined pieces.
    think, close = tok.token_to_id("<think>"), tok.token_to_id("</think>")
    assert tok.encode("<think>") == [think] and tok.encode("</think>") == [close] and think != close
    assert tok.encode("\n") == [tok.token_to_id("\n")]
    assert len(tok.encode(TEXTS[0])) < 0.8 * len(TEXTS[0].encode())  # learned multi-byte pieces


def test_training_is_deterministic(tmp_path):
    a = train_sentencepiece(TEXTS, str(tmp_path / "a.model"), vocab_size=350)
    b = train_sentencepiece(TEXTS, str(tmp_path / "b.model"), vocab_size=350)
    assert open(a, "rb").read() == open(b, "rb").read()


def test_train_from_prepared_dataset_via_cli(tmp_path, capsys):
    import rlp_jax.cli as cli

    (tmp_path / "a.txt").write_text("\n\n".join(TEXTS))
    prepare("t", [str(tmp_path / "a.txt")], str(tmp_path / "data"), validation_fraction=0.0)
    out = tmp_path / "tok"
    rc = cli.main(["tokenizer", "train", "--data", str(tmp_path / "data"), "--vocab-size", "350",
                   "--out", str(out), "--type", "bpe", "--user-symbols", "<think>,</think>,<answer>"])
    assert rc == 0
    assert "vocab 350, pad 0, bos 2, eos 3" in capsys.readouterr().out
    tok = load_tokenizer(str(out))
    assert tok.decode(tok.encode(TEXTS[-1])) == TEXTS[-1]
    assert len(tok.encode("<answer>")) == 1


def test_vocab_size_errors(tmp_path):
    with pytest.raises(UserError, match="too small"):
        train_sentencepiece(TEXTS, str(tmp_path / "x"), vocab_size=100)
    with pytest.raises(UserError, match="too large for this corpus"):
        train_sentencepiece(TEXTS, str(tmp_path / "x"), vocab_size=50_000)
    with pytest.raises(UserError, match="empty corpus"):
        train_sentencepiece(["", "\n \n"], str(tmp_path / "x"), vocab_size=400)
