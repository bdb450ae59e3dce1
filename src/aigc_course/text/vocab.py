"""Word and character vocabularies with special tokens, shared by the course's small seq2seq models.

Taught in chapter 3.2 (sequence to sequence) and used by the translation model (5.4), the image
captioner (5.12), the mini-CLIP text encoder and the text-to-image prompts (5.10, 5.11).

1. English is lower-cased and split into words, with punctuation split off ("Don't go!" ->
   ``["don't", "go", "!"]``); Chinese is split into characters (one token per character, no word
   segmentation needed).
2. A :class:`Vocab` maps tokens to ids, with four special tokens first:
   ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2, ``<unk>`` = 3.
"""

from __future__ import annotations

import re
from collections import Counter

import torch

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = 0, 1, 2, 3

_EN_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)*|[^\sa-z0-9]")


def tokenize_en(text: str) -> list[str]:
    """Lower-cased English words; punctuation marks become tokens of their own."""
    return _EN_TOKEN.findall(text.lower())


def tokenize_zh(text: str) -> list[str]:
    """Chinese characters (and punctuation), one token each; white space is dropped."""
    return [c for c in text if not c.isspace()]


TOKENIZE = {"en": tokenize_en, "zh": tokenize_zh}
JOIN = {"en": " ", "zh": ""}


class Vocab:
    """Token <-> id map with the special tokens <pad>=0, <bos>=1, <eos>=2, <unk>=3.

    ``lang`` ("en" or "zh") chooses how a string is split into tokens and how tokens are joined
    back. ``encode`` accepts a string or a list of tokens; unknown tokens map to <unk>.
    """

    def __init__(self, tokens: list[str], lang: str = "en"):
        if lang not in TOKENIZE:
            raise ValueError(f"lang must be one of {sorted(TOKENIZE)}, got {lang!r}.")
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"A Vocab must start with the special tokens {SPECIALS}; build it with Vocab.build.")
        if len(set(tokens)) != len(tokens):
            raise ValueError("The vocabulary has repeated tokens.")
        self.tokens, self.lang = list(tokens), lang
        self.stoi = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, sequences, lang: str = "en", min_freq: int = 1, max_size: int | None = None) -> Vocab:
        """Vocabulary of the tokens seen at least ``min_freq`` times (most frequent first, ties
        alphabetical, so the same data always give the same ids). ``sequences``: lists of tokens."""
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}.")
        counts = Counter(t for seq in sequences for t in seq)
        kept = sorted((t for t, n in counts.items() if n >= min_freq and t not in SPECIALS),
                      key=lambda t: (-counts[t], t))
        return cls(list(SPECIALS) + kept[:max_size], lang=lang)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    def tokenize(self, text: str) -> list[str]:
        return TOKENIZE[self.lang](text)

    def encode(self, text_or_tokens, bos: bool = False, eos: bool = False) -> list[int]:
        """Ids of a string (tokenized by ``lang``) or of a list of tokens; optional <bos> / <eos>."""
        tokens = self.tokenize(text_or_tokens) if isinstance(text_or_tokens, str) else text_or_tokens
        ids = [self.stoi.get(t, UNK) for t in tokens]
        return ([BOS] if bos else []) + ids + ([EOS] if eos else [])

    def decode_tokens(self, ids) -> list[str]:
        """Tokens of ``ids``, stopping at the first <eos> and skipping <pad> and <bos>."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        out = []
        for i in ids:
            if not 0 <= i < len(self.tokens):
                raise ValueError(f"Token id {i} out of range 0..{len(self.tokens) - 1}.")
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(self.tokens[i])
        return out

    def decode(self, ids) -> str:
        return JOIN[self.lang].join(self.decode_tokens(ids))

    def to_dict(self) -> dict:
        return {"type": "vocab", "lang": self.lang, "tokens": self.tokens}

    @classmethod
    def from_dict(cls, d: dict) -> Vocab:
        if d.get("type") != "vocab":
            raise ValueError(f"Not a saved Vocab: type={d.get('type')!r}.")
        return cls(d["tokens"], lang=d.get("lang", "en"))

    def __repr__(self) -> str:
        return f"Vocab(lang={self.lang!r}, vocab_size={self.vocab_size})"
