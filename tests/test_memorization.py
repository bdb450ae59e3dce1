"""Tests of the verbatim-overlap (memorisation) measures (part 1)."""

from __future__ import annotations

import math

import pytest

from aigc_course.metrics.memorization import (
    NgramIndex,
    covered_fraction,
    covered_mask,
    highlight,
    longest_verbatim_match,
    matching_lengths,
    ngrams,
    verbatim_overlap,
)

CORPUS = "to be or not to be, that is the question"


def test_ngrams():
    assert ngrams("abcd", 2) == ["ab", "bc", "cd"]
    assert ngrams("ab", 3) == []
    with pytest.raises(ValueError, match="positive"):
        ngrams("abc", 0)


def test_overlap_extremes_and_partial():
    assert verbatim_overlap(CORPUS, CORPUS, n=5) == 1.0
    assert verbatim_overlap("xyzxyzxyzxyz", CORPUS, n=5) == 0.0
    # "to be or" (8 chars) copied, then "@@@@": 4 of the 8 five-grams are copied
    assert verbatim_overlap("to be or@@@@", CORPUS, n=5) == pytest.approx(4 / 8)
    assert math.isnan(verbatim_overlap("abc", CORPUS, n=5))


def test_list_of_samples_does_not_cross_boundaries():
    # "the q" + "uestion" would form copied 5-grams only across the boundary
    assert verbatim_overlap(["the q", "uesti"], CORPUS, n=5) == 1.0
    assert verbatim_overlap(["he qu", "@@@@@"], CORPUS, n=5) == 0.5


def test_index_reuse_and_mismatch():
    idx = NgramIndex(CORPUS, 5)
    assert "to be" in idx and len(idx) <= len(CORPUS) - 4
    assert verbatim_overlap("to be or", idx, n=5) == 1.0
    with pytest.raises(ValueError, match="holds 5-grams"):
        verbatim_overlap("to be", idx, n=6)
    with pytest.raises(TypeError):
        NgramIndex(["not", "a", "string"], 2)


def test_covered_mask_and_fraction():
    mask = covered_mask("@@to be@@", CORPUS, n=5)
    assert mask == [False, False, True, True, True, True, True, False, False]
    assert covered_fraction("@@to be@@", CORPUS, n=5) == pytest.approx(5 / 9)
    assert highlight("@@to be@@", CORPUS, n=5) == "@@[to be]@@"


def test_matching_lengths_match_brute_force():
    gen = "xx not to be, thaty question"
    fast = matching_lengths(gen, CORPUS)
    brute = [max(L for L in range(len(gen) - i + 1) if gen[i : i + L] in CORPUS) for i in range(len(gen))]
    assert fast == brute
    assert longest_verbatim_match(gen, CORPUS) == (16, " not to be, that")
    assert longest_verbatim_match("", CORPUS) == (0, "")
