"""Short text prompts about digits, for the text-to-image miniature of parts 3 and 5.

Each MNIST label gets many phrasings ("a handwritten seven", "the digit 7", "number seven", ...),
so that the text encoder of the mini-CLIP has to learn that "7" and "seven" mean the same images,
and the conditional diffusion model is steered by a sentence rather than by a class id. The
empty prompt "" is the "no text" condition of classifier-free guidance, as in Stable Diffusion.
"""

from __future__ import annotations

import torch

from aigc_course.runtime import randint
from aigc_course.text.vocab import PAD, Vocab

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# {w}: the number word, {d}: the numeral
TEMPLATES = (
    "a handwritten {w}",
    "a handwritten {d}",
    "the digit {w}",
    "the digit {d}",
    "the number {w}",
    "number {d}",
    "a picture of a {w}",
    "an image of the digit {d}",
    "a hand-drawn {w}",
    "{w}",
    "{d}",
    "the number {d}",
)
# the last phrasing is held out: every word of "the number 7" is seen in training, never this combination
TRAIN_TEMPLATES = TEMPLATES[:-1]
MAX_LEN = 8  # tokens per prompt, <eos> included


def prompt(label: int, template: str = "a handwritten {w}") -> str:
    """The prompt for digit ``label`` with ``template`` (fields {w} = word, {d} = numeral)."""
    if not 0 <= int(label) <= 9:
        raise ValueError(f"A digit label must be in 0..9, got {label}.")
    return template.format(w=DIGIT_WORDS[int(label)], d=int(label))


def random_prompts(labels: torch.Tensor, generator: torch.Generator | None = None,
                   templates: tuple[str, ...] = TRAIN_TEMPLATES) -> list[str]:
    """One prompt per label, with a template drawn uniformly (seeded by ``generator``)."""
    idx = randint(len(templates), (len(labels),), generator)  # drawn on the generator's device
    return [prompt(int(y), templates[int(i)]) for y, i in zip(labels, idx)]


def all_prompts(templates: tuple[str, ...] = TEMPLATES) -> list[str]:
    """Every (template, digit) prompt, digit-major: 10 x len(templates) strings."""
    return [prompt(d, t) for d in range(10) for t in templates]


def build_vocab() -> Vocab:
    """The word vocabulary of all prompts (fixed order, so ids never change)."""
    return Vocab.build([p.split() for p in all_prompts()])


def encode_prompts(vocab: Vocab, prompts: list[str], max_len: int = MAX_LEN) -> torch.Tensor:
    """Token ids (B, max_len): words, then <eos>, then <pad>. The empty prompt is just <eos>."""
    rows = []
    for p in prompts:
        ids = vocab.encode(p, eos=True)
        if len(ids) > max_len:
            raise ValueError(f"Prompt {p!r} has {len(ids)} tokens with <eos>; the limit is {max_len}.")
        rows.append(ids + [PAD] * (max_len - len(ids)))
    return torch.tensor(rows, dtype=torch.long)
