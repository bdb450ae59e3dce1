"""Character-level tokenizer with a stable, saved vocabulary.

Taught in part 2, "Text and images as tensors". The vocabulary is the sorted set of characters
of the training text, so the same text always gives the same ids; it is saved as JSON next to
trained weights so that a model is never decoded with another model's vocabulary.
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import torch

# The "type" field of a saved tokenizer -> "module:Class". Every class has ``to_dict()`` (with
# that "type"), ``from_dict(d)``, ``encode``, ``decode`` and ``vocab_size``.
TOKENIZER_TYPES = {
    "char": "aigc_course.text.tokenizers:CharTokenizer",
    "vocab": "aigc_course.text.vocab:Vocab",  # word/character vocabularies with special tokens
    "bpe": "aigc_course.text.bpe:BPETokenizer",
    "chat": "aigc_course.assistant.chat:ChatTokenizer",  # characters + role tokens (3.9, 5.14)
}


def save_json(obj: dict, path: str | Path) -> None:
    """Write ``obj`` as UTF-8 JSON atomically (a temporary file, then a rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=0), encoding="utf-8")
    os.replace(tmp, path)


def load_tokenizer_file(path: str | Path):
    """Load any saved course tokenizer; its class is chosen by the file's "type" field."""
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not a saved tokenizer ({err}).") from err
    kind = d.get("type") if isinstance(d, dict) else None
    if kind not in TOKENIZER_TYPES:
        raise ValueError(f"{path}: unknown tokenizer type {kind!r}; known: {', '.join(TOKENIZER_TYPES)}.")
    module, cls = TOKENIZER_TYPES[kind].split(":")
    return getattr(importlib.import_module(module), cls).from_dict(d)


class CharTokenizer:
    """Maps each character to an integer id and back.

    >>> tok = CharTokenizer.from_text("hello")
    >>> tok.encode("hell")
    [1, 0, 2, 2]
    >>> tok.decode([1, 0, 2, 3])
    'helo'
    """

    def __init__(self, chars: list[str], unk: str | None = None):
        if len(set(chars)) != len(chars):
            raise ValueError("The vocabulary has repeated characters.")
        if unk is not None and unk not in chars:
            raise ValueError(f"The unknown-character symbol {unk!r} is not in the vocabulary.")
        self.chars = list(chars)
        self.unk = unk
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str, unk: str | None = None) -> CharTokenizer:
        chars = sorted(set(text) | ({unk} if unk else set()))
        return cls(chars, unk=unk)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            if self.unk is None:
                missing = sorted({c for c in text if c not in self.stoi})
                raise ValueError(
                    f"Characters not in the vocabulary: {missing[:10]!r}. Build the tokenizer "
                    f"from text that contains them, or pass unk='?' to map them to one symbol."
                ) from None
            u = self.stoi[self.unk]
            return [self.stoi.get(c, u) for c in text]

    def encode_tensor(self, text: str) -> torch.Tensor:
        return torch.tensor(self.encode(text), dtype=torch.long)

    def decode(self, ids) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        try:
            return "".join(self.chars[i] for i in ids)
        except IndexError:
            raise ValueError(f"Token id out of range 0..{self.vocab_size - 1}.") from None

    def to_dict(self) -> dict:
        return {"type": "char", "chars": self.chars, "unk": self.unk}

    @classmethod
    def from_dict(cls, d: dict) -> CharTokenizer:
        if d.get("type") != "char":
            raise ValueError(f"Not a character tokenizer: type={d.get('type')!r}.")
        return cls(d["chars"], unk=d.get("unk"))

    def save(self, path: str | Path) -> None:
        save_json(self.to_dict(), path)

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (json.JSONDecodeError, KeyError) as err:
            raise ValueError(f"{path} is not a saved CharTokenizer ({err}).") from err

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
