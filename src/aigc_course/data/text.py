"""Text corpora of the course: Shakespeare, Tang poems, English-Chinese sentence pairs.

Taught in part 2 ("Text and images as tensors") and the language chapters of parts 3-5.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .download import DataError, fetch


def load_text(name: str = "tinyshakespeare") -> str:
    """The whole corpus as one string (only 'tinyshakespeare' is a plain-text corpus)."""
    if name != "tinyshakespeare":
        raise ValueError(f"load_text knows 'tinyshakespeare'; use load_tang_poems / load_en_zh for {name!r}.")
    return fetch(name)["input.txt"].read_text(encoding="utf-8")


def train_val_split(data, val_fraction: float = 0.1):
    """The first (1 - val_fraction) of a sequence for training, the rest for validation.

    A contiguous split (nanoGPT's 90/10 for Shakespeare): a random split of overlapping windows
    would leak validation text into training.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}.")
    n = int(len(data) * (1.0 - val_fraction))
    return data[:n], data[n:]


@dataclass(frozen=True)
class Poem:
    title: str
    author: str
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def load_tang_poems() -> list[Poem]:
    """10,008 Tang poems in traditional characters (chinese-poetry, 全唐诗 files 0-9000)."""
    poems: list[Poem] = []
    for _fname, path in sorted(fetch("tang_poems").items(), key=lambda kv: int(kv[0].split(".")[2])):
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(f"{path} is not valid JSON ({err}). Delete it and run again.") from err
        for r in records:
            poems.append(Poem(r.get("title", ""), r.get("author", ""), tuple(r.get("paragraphs", ()))))
    return poems


@dataclass(frozen=True)
class SentencePair:
    en: str
    zh: str
    attribution: str  # CC BY 2.0 FR requires keeping it


def load_en_zh() -> list[SentencePair]:
    """26,388 English-Chinese pairs from Tatoeba (CC BY 2.0 FR), shortest first."""
    pairs = []
    path = fetch("en_zh")["cmn.txt"]
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        cols = line.split("\t")
        if len(cols) != 3:
            raise DataError(f"{path}, line {i + 1}: expected 3 tab-separated columns, got {len(cols)}.")
        pairs.append(SentencePair(*cols))
    return pairs
