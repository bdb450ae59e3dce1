"""Measuring memorisation: how much of a generated text is copied verbatim from the training text.

Taught in part 1 ("Opportunities and challenges"), where a small character GPT trained for long
on a tiny corpus is caught reciting it. The measures follow the "extractable memorisation" idea
of Carlini et al. (2021, 2023): a generated string counts as memorised when it occurs verbatim in
the training data; 50 tokens is their usual length, 30 characters ours.

* ``verbatim_overlap(generated, corpus, n)``: the fraction of the generated text's n-character
  substrings (all positions, overlapping) that occur somewhere in ``corpus``.
* ``covered_fraction(generated, corpus, n)``: the fraction of generated *characters* that lie
  inside at least one such copied n-gram.
* ``matching_lengths`` / ``longest_verbatim_match``: for each position, the longest substring
  starting there that occurs in the corpus ("matching statistics").
"""

from __future__ import annotations


class NgramIndex:
    """The set of all n-character substrings of a corpus, for fast membership tests."""

    def __init__(self, corpus: str, n: int):
        _check_n(n)
        if not isinstance(corpus, str):
            raise TypeError(f"corpus must be a str, got {type(corpus).__name__}.")
        self.n = n
        self.grams = {corpus[i : i + n] for i in range(len(corpus) - n + 1)}

    def __contains__(self, s: str) -> bool:
        return s in self.grams

    def __len__(self) -> int:
        return len(self.grams)


def _check_n(n: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}.")


def _index(corpus: str | NgramIndex, n: int) -> NgramIndex:
    if isinstance(corpus, NgramIndex):
        if corpus.n != n:
            raise ValueError(f"The index holds {corpus.n}-grams, but n={n}.")
        return corpus
    return NgramIndex(corpus, n)


def ngrams(text: str, n: int) -> list[str]:
    """All overlapping n-character substrings of ``text`` (len(text) - n + 1 of them)."""
    _check_n(n)
    return [text[i : i + n] for i in range(len(text) - n + 1)]


def verbatim_overlap(generated: str | list[str], corpus: str | NgramIndex, n: int = 30) -> float:
    """Fraction of the generated n-grams found verbatim in ``corpus`` (0 = none copied, 1 = all).

    ``generated`` may be one string or a list of samples (n-grams never cross two samples).
    Returns ``nan`` when no sample is at least n characters long.
    """
    index = _index(corpus, n)
    samples = [generated] if isinstance(generated, str) else list(generated)
    grams = [g for s in samples for g in ngrams(s, n)]
    if not grams:
        return float("nan")
    return sum(g in index for g in grams) / len(grams)


def covered_mask(generated: str, corpus: str | NgramIndex, n: int = 30) -> list[bool]:
    """For each generated character: is it inside some n-gram that occurs in ``corpus``?"""
    index = _index(corpus, n)
    mask = [False] * len(generated)
    for i, g in enumerate(ngrams(generated, n)):
        if g in index:
            mask[i : i + n] = [True] * n
    return mask


def covered_fraction(generated: str | list[str], corpus: str | NgramIndex, n: int = 30) -> float:
    """Fraction of generated characters that lie inside a copied n-gram (``nan`` if empty)."""
    index = _index(corpus, n)
    samples = [generated] if isinstance(generated, str) else list(generated)
    masks = [m for s in samples for m in covered_mask(s, index, n)]
    return sum(masks) / len(masks) if masks else float("nan")


def matching_lengths(generated: str, corpus: str) -> list[int]:
    """For each position i, the length of the longest generated[i:i+L] occurring in ``corpus``.

    Uses the fact that the match at i+1 is at least the match at i minus one, so the loop does
    O(len(generated)) substring searches in total.
    """
    lengths, L = [], 0
    for i in range(len(generated)):
        L = max(L - 1, 0)
        while i + L < len(generated) and generated[i : i + L + 1] in corpus:
            L += 1
        lengths.append(L)
    return lengths


def longest_verbatim_match(generated: str, corpus: str) -> tuple[int, str]:
    """The longest substring of ``generated`` that occurs in ``corpus``: (length, substring)."""
    lengths = matching_lengths(generated, corpus)
    if not lengths:
        return 0, ""
    i = max(range(len(lengths)), key=lengths.__getitem__)
    return lengths[i], generated[i : i + lengths[i]]


def highlight(generated: str, corpus: str | NgramIndex, n: int = 30, marks: tuple[str, str] = ("[", "]")) -> str:
    """The generated text with copied spans (from ``covered_mask``) wrapped in ``marks``."""
    mask = covered_mask(generated, corpus, n)
    out, inside = [], False
    for ch, m in zip(generated, mask):
        if m != inside:
            out.append(marks[0] if m else marks[1])
            inside = m
        out.append(ch)
    if inside:
        out.append(marks[1])
    return "".join(out)


__all__ = ["NgramIndex", "covered_fraction", "covered_mask", "highlight", "longest_verbatim_match",
           "matching_lengths", "ngrams", "verbatim_overlap"]
