"""Train a sentencepiece tokenizer on a prepared corpus.

Settings make `decode(encode(text)) == text` hold exactly (identity normalization, no
whitespace squashing, byte fallback for unseen characters, newline and tab as pieces) so
RLP rewards are computed on the real text, and reserve ids the pipeline relies on:
pad = 0 (padding in packed windows), unk = 1, bos = 2, eos = 3, then the thought
markers as user-defined symbols so a thought delimiter is always a single token.
"""

from __future__ import annotations

import io
import os
import re
from typing import Iterable, Iterator

from rlp_jax import progress
from rlp_jax.errors import UserError, one_line, writing
from rlp_jax.tokenizer import SENTENCEPIECE_FILE

THOUGHT_MARKERS = ("<think>", "</think>")
MODEL_TYPES = ("unigram", "bpe")
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
_MAX_LINE_BYTES = 4096


def training_lines(texts: Iterable[str]) -> Iterator[str]:
    """Non-empty lines (sentencepiece trains on lines), long ones cut to its length limit."""
    for text in texts:
        for line in text.split("\n"):
            while line:
                chunk, line = line[:_MAX_LINE_BYTES // 4], line[_MAX_LINE_BYTES // 4:]
                if chunk.strip():
                    yield chunk


def output_path(out: str) -> str:
    """`out` itself if it names a `.model` file, else `out/tokenizer.model`."""
    return out if out.endswith(".model") else os.path.join(out, SENTENCEPIECE_FILE)


def train_sentencepiece(texts: Iterable[str], out: str, vocab_size: int,
                        model_type: str = "unigram", user_symbols: Iterable[str] = THOUGHT_MARKERS,
                        max_sentences: int = 2_000_000, character_coverage: float = 0.9995,
                        seed_sentencepiece_size: int = 1_000_000, num_threads: int = 2) -> str:
    """Train and write the model; returns the `.model` path."""
    import sentencepiece as spm

    if model_type not in MODEL_TYPES:
        raise UserError(f"unknown tokenizer type {model_type!r}; choose one of {', '.join(MODEL_TYPES)}")
    symbols = list(dict.fromkeys(["\n", "\t", *user_symbols]))
    if vocab_size < 1:
        raise UserError(f"--vocab-size must be positive, got {vocab_size}")
    # The smallest workable size depends on the corpus (see _training_error), so sentencepiece,
    # which counts the characters before it trains, is the one to tell.
    reserved = 4 + 256 + len(symbols)  # specials + byte pieces + user symbols
    lines = list(training_lines(texts))
    if not lines:
        raise UserError("empty corpus: no text to train the tokenizer on")
    path = output_path(out)
    model = io.BytesIO()
    bar = progress.bar(desc="tokenizer train", total=len(lines), unit="line")
    try:
        spm.SentencePieceTrainer.Train(
            sentence_iterator=_fed(lines, bar), model_writer=model, vocab_size=vocab_size,
            model_type=model_type, byte_fallback=True, normalization_rule_name="identity",
            remove_extra_whitespaces=False, add_dummy_prefix=False, split_digits=True,
            allow_whitespace_only_pieces=True, user_defined_symbols=symbols,
            pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
            character_coverage=character_coverage, input_sentence_size=max_sentences,
            shuffle_input_sentence=True, seed_sentencepiece_size=seed_sentencepiece_size,
            num_threads=num_threads, minloglevel=2,
        )
    except RuntimeError as err:
        raise _training_error(vocab_size, reserved, one_line(err)) from None
    finally:
        bar.close()
    # Only now, with a model in hand, is anything created: a failed run leaves no empty directory.
    with writing(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "wb") as f:
            f.write(model.getvalue())
    return path


def _training_error(vocab_size: int, reserved: int, message: str) -> UserError:
    """sentencepiece's failure as one line; a too-small vocabulary names the true minimum, which
    depends on the corpus: every character within `character_coverage` needs its own piece."""
    needed = re.search(r"smaller than required_chars\. \d+ vs (\d+)", message)
    if needed:
        minimum = int(needed.group(1))
        return UserError(f"--vocab-size {vocab_size} is too small for this corpus: it needs at least "
                         f"{minimum} ({reserved} reserved ids: 4 special tokens, 256 byte pieces and the "
                         f"user symbols; plus one piece for each of the corpus's {minimum - reserved} "
                         "characters)")
    at_most = re.search(r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)", message)
    if at_most:
        return UserError(f"--vocab-size {vocab_size} is too large for this corpus: it yields at most "
                         f"{at_most.group(1)} pieces (more text gives room for more)")
    if "Vocabulary size" in message:
        return UserError(f"--vocab-size {vocab_size} is too large for this corpus: {message}")
    return UserError(f"sentencepiece training failed: {message}")


def _fed(lines: list[str], bar) -> Iterator[str]:
    """The lines, counted on `bar` as sentencepiece reads them; then it fits its pieces,
    which reports no progress of its own."""
    for line in lines:
        bar.update()
        yield line
    bar.set_postfix_str("fitting pieces")
