"""Tang poems as a language-modelling corpus, and generating poems with a character GPT.

Taught in chapter 5.3 ("Writing Tang poems"). The corpus is the chinese-poetry collection of the
Complete Tang Poems (全唐诗), in traditional characters. We keep the *regular* poems, whose lines
are all couplets of two five-character or two seven-character verses (``XXXXX，XXXXX。``, 12
characters, or ``XXXXXXX，XXXXXXX。``, 16), so that a generated poem's form can be checked by
counting: :func:`form_score` is the fraction of generated lines that have a valid form.
"""

from __future__ import annotations

import random
from collections import Counter

import torch
import torch.nn.functional as F

from aigc_course.data.text import Poem
from aigc_course.text.decoding import filter_logits
from aigc_course.text.tokenizers import CharTokenizer

LINE_LENGTHS = (12, 16)  # a couplet of 5 + 5 or 7 + 7 characters with its two punctuation marks
UNK = "□"  # stands for characters rarer than the tokenizer's min_count
POEM_END = "\n\n"


def is_regular_line(line: str) -> bool:
    """True for ``XXXXX，XXXXX。`` or ``XXXXXXX，XXXXXXX。`` (punctuation exactly in place)."""
    if len(line) not in LINE_LENGTHS:
        return False
    half = len(line) // 2  # 6 or 8: five/seven characters and a mark
    marks = {line[half - 1], line[-1]}
    body = line[: half - 1] + line[half:-1]
    return line[half - 1] == "，" and line[-1] in "。？！" and not any(c in "，。？！；：、" for c in body) \
        and len(marks) == 2


def regular_poems(poems: list[Poem]) -> list[Poem]:
    """The poems whose lines are all regular couplets of one length (5- or 7-character verse)."""
    keep = []
    for p in poems:
        if p.lines and all(is_regular_line(line) for line in p.lines) and len({len(x) for x in p.lines}) == 1:
            keep.append(p)
    return keep


def split_poems(poems: list[Poem], val_fraction: float = 0.05, seed: int = 0) -> tuple[list[Poem], list[Poem]]:
    """A seeded shuffle, then whole poems to validation (no poem is split between the two)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}.")
    order = list(range(len(poems)))
    random.Random(seed).shuffle(order)
    n_val = max(1, int(len(poems) * val_fraction))
    return [poems[i] for i in order[n_val:]], [poems[i] for i in order[:n_val]]


def corpus(poems: list[Poem]) -> str:
    """Poems one after another, each followed by a blank line (the end-of-poem marker)."""
    return "".join(p.text + POEM_END for p in poems)


def build_tokenizer(text: str, min_count: int = 3) -> CharTokenizer:
    """Characters seen at least ``min_count`` times, plus :data:`UNK` for the rest."""
    counts = Counter(text)
    chars = sorted({c for c, n in counts.items() if n >= min_count} | {UNK})
    return CharTokenizer(chars, unk=UNK)


def form_score(text: str) -> dict:
    """How well generated text keeps the form: share of regular lines, and of whole poems whose
    lines are all regular and of one length."""
    poems = [p for p in text.split(POEM_END) if p.strip()]
    lines = [line for p in poems for line in p.split("\n") if line]
    ok_lines = sum(is_regular_line(line) for line in lines)
    ok_poems = sum(all(is_regular_line(x) for x in p.split("\n") if x) and len({len(x) for x in p.split("\n") if x}) == 1
                   for p in poems)
    return {"lines": len(lines), "regular_lines": ok_lines / max(1, len(lines)),
            "poems": len(poems), "regular_poems": ok_poems / max(1, len(poems))}


@torch.no_grad()
def _next_char(model, ids: list[int], temperature: float, top_k: int | None, generator) -> int:
    device = next(model.parameters()).device
    ctx = torch.tensor([ids[-model.config.block_size:]], device=device)
    logits = model(ctx)[0, -1].float()  # (V,)
    if temperature == 0:
        return int(logits.argmax())
    probs = F.softmax(filter_logits(logits / temperature, top_k), dim=-1)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))


@torch.no_grad()
def acrostic(model, tok: CharTokenizer, heads: str, temperature: float = 0.8, top_k: int | None = 20,
             max_line: int = 20, seed: int = 0) -> str:
    """A 藏头诗 (acrostic poem): line i starts with the character ``heads[i]``.

    The model writes each line after its forced first character until it ends the line with a
    newline (or ``max_line`` characters). The previous poem boundary ``\\n\\n`` is the prompt,
    as every training poem starts after one.
    """
    missing = [c for c in heads if c not in tok.stoi]
    if not heads or missing:
        raise ValueError(f"Every head character must be in the vocabulary; missing: {missing!r}.")
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    nl = tok.stoi["\n"]
    ids = tok.encode(POEM_END)
    lines = []
    for h in heads:
        ids.append(tok.stoi[h])
        line = [ids[-1]]
        for _ in range(max_line):
            nxt = _next_char(model, ids, temperature, top_k, gen)
            ids.append(nxt)
            if nxt == nl:
                break
            line.append(nxt)
        else:
            ids.append(nl)
        lines.append(tok.decode(line))
    return "\n".join(lines)


@torch.no_grad()
def write_poems(model, tok: CharTokenizer, n: int, temperature: float = 0.8, top_k: int | None = 20,
                max_chars: int = 200, seed: int = 0) -> list[str]:
    """``n`` free poems, each started from the end-of-poem marker and stopped at the next one."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = tok.encode(POEM_END)
        start = len(ids)
        for _ in range(max_chars):
            ids.append(_next_char(model, ids, temperature, top_k, gen))
            if tok.decode(ids[-2:]) == POEM_END and len(ids) > start + 2:
                break
        out.append(tok.decode(ids[start:]).strip("\n"))
    return out
