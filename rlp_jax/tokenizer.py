"""One small tokenizer interface over sentencepiece models and HF `tokenizer.json` files.

Checkpoints store their tokenizer beside the weights as `tokenizer.model` (sentencepiece)
or `tokenizer.json` (HF tokenizers); `load_tokenizer(dir_or_file)` picks the right one.
GGUF files carry a byte-level BPE vocabulary in their metadata, which `convert_gguf`
turns into a `tokenizer.json` (see `rlp_jax.convert.gguf_tokenizer`).
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Protocol, Sequence

from rlp_jax.errors import UserError

SENTENCEPIECE_FILE = "tokenizer.model"
HF_TOKENIZER_FILE = "tokenizer.json"
SPECIAL_TOKENS_FILE = "special_tokens.json"


class Tokenizer(Protocol):
    """What the rest of rlp_jax needs from a tokenizer."""

    vocab_size: int
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    add_bos: bool  # whether sequences conventionally start with bos_id

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def token_to_id(self, token: str) -> int | None: ...

    def id_to_piece(self, token_id: int) -> str: ...

    def save(self, directory: str) -> None: ...


class SentencePieceTokenizer:
    """A sentencepiece `.model` file."""

    def __init__(self, path: str):
        import sentencepiece as spm

        self.path = path
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.Load(path)
        except (OSError, RuntimeError) as err:
            raise UserError(f"cannot load sentencepiece model {path}: {err}") from None
        self.vocab_size = int(self._sp.GetPieceSize())
        self.bos_id = _nonneg(self._sp.bos_id())
        self.eos_id = _nonneg(self._sp.eos_id())
        self.pad_id = _nonneg(self._sp.pad_id())
        self.add_bos = self.bos_id is not None

    def encode(self, text: str) -> list[int]:
        return list(self._sp.EncodeAsIds(text))

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.DecodeIds([int(i) for i in ids])

    def token_to_id(self, token: str) -> int | None:
        idx = self._sp.PieceToId(token)
        return None if idx == self._sp.unk_id() and token != self._sp.IdToPiece(idx) else int(idx)

    def id_to_piece(self, token_id: int) -> str:
        return self._sp.IdToPiece(int(token_id))

    def save(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        shutil.copyfile(self.path, os.path.join(directory, SENTENCEPIECE_FILE))


class HFTokenizer:
    """An HF `tokenizers` tokenizer (`tokenizer.json`), with bos/eos/pad ids kept beside it."""

    def __init__(self, tokenizer, bos_id=None, eos_id=None, pad_id=None, add_bos=False):
        self._tok = tokenizer
        self.vocab_size = int(tokenizer.get_vocab_size(with_added_tokens=True))
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self.add_bos = bool(add_bos) and bos_id is not None

    @classmethod
    def from_file(cls, path: str) -> "HFTokenizer":
        from tokenizers import Tokenizer as HFTok

        try:
            tok = HFTok.from_file(path)
        except Exception as err:  # the tokenizers library raises bare Exceptions
            raise UserError(f"cannot load tokenizer {path}: {err}") from None
        specials = _read_special_tokens(os.path.dirname(path), tok)
        return cls(tok, **specials)

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_piece(self, token_id: int) -> str:
        return self._tok.id_to_token(int(token_id))

    def save(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self._tok.save(os.path.join(directory, HF_TOKENIZER_FILE))
        with open(os.path.join(directory, SPECIAL_TOKENS_FILE), "w") as f:
            json.dump({"bos_id": self.bos_id, "eos_id": self.eos_id, "pad_id": self.pad_id,
                       "add_bos": self.add_bos}, f)


def find_tokenizer(path: str | None) -> str | None:
    """The tokenizer file `path` names (itself, or the one in a directory), None if there is none."""
    if not path:
        return None
    if os.path.isdir(path):
        for name in (SENTENCEPIECE_FILE, HF_TOKENIZER_FILE):
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        return None
    return path if os.path.isfile(path) else None


# Text that exercises letters, digits, punctuation, whitespace, non-ASCII and thought markers.
_PROBE = "The quick brown fox, 12 + 7 = 19.\n\tÜber naïve café 中文 🎭 <think>a step</think> done."


def same_vocabulary(a: Tokenizer, b: Tokenizer) -> bool:
    """Whether two tokenizers give the same ids: one saved in another place or format passes,
    a tokenizer of another vocabulary (whose ids would index other embedding rows) does not."""
    return a.vocab_size == b.vocab_size and a.encode(_PROBE) == b.encode(_PROBE)


def load_tokenizer(path: str) -> Tokenizer:
    """Load a tokenizer from a `.model` / `.json` file or a directory holding one."""
    if os.path.isdir(path):
        found = find_tokenizer(path)
        if found is None:
            raise UserError(f"no {SENTENCEPIECE_FILE} or {HF_TOKENIZER_FILE} in {path}")
        return load_tokenizer(found)
    if not os.path.exists(path):
        raise UserError(f"tokenizer not found: {path}")
    if path.endswith(".json"):
        return HFTokenizer.from_file(path)
    return SentencePieceTokenizer(path)


def _nonneg(value: int) -> int | None:
    return int(value) if value is not None and value >= 0 else None


def _read_special_tokens(directory: str, tok) -> dict:
    """bos/eos/pad ids: from special_tokens.json if present, else an HF tokenizer_config.json."""
    path = os.path.join(directory, SPECIAL_TOKENS_FILE)
    if os.path.exists(path):
        with open(path) as f:
            return {k: v for k, v in json.load(f).items()
                    if k in ("bos_id", "eos_id", "pad_id", "add_bos")}
    path = os.path.join(directory, "tokenizer_config.json")
    out = {"bos_id": None, "eos_id": None, "pad_id": None, "add_bos": False}
    if os.path.exists(path):
        with open(path) as f:
            cfg = json.load(f)
        out["add_bos"] = bool(cfg.get("add_bos_token", False))
        for key in ("bos", "eos", "pad"):
            token = cfg.get(f"{key}_token")
            if isinstance(token, dict):
                token = token.get("content")
            if isinstance(token, str):
                out[f"{key}_id"] = tok.token_to_id(token)
    return out
