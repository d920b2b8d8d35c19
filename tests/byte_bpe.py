"""A tiny byte-level BPE tokenizer for tests: every byte is a token, plus chosen merged words."""

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from rlp_jax.tokenizer import HFTokenizer


def _gpt2_byte_chars():
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    table, extra = {b: b for b in printable}, 0
    for b in range(256):
        if b not in table:
            table[b] = 256 + extra
            extra += 1
    return [chr(table[b]) for b in range(256)]


def tiny_byte_bpe(words, specials=()) -> HFTokenizer:
    """Byte-level BPE whose merges make each of `words` one token; `specials` are added tokens."""
    chars = _gpt2_byte_chars()
    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    merges = []
    for word in words:
        pieces = "".join(chars[b] for b in word.encode("utf-8"))
        current = pieces[0]
        for ch in pieces[1:]:
            merges.append((current, ch))
            vocab.setdefault(current + ch, len(vocab))
            current += ch
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    if specials:
        tok.add_special_tokens(list(specials))
    eos = tok.token_to_id(specials[-1]) if specials else None
    return HFTokenizer(tok, eos_id=eos)
