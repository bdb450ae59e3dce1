"""Tests of aigc_course.metrics.text against sacrebleu, rouge-score and F.cross_entropy."""

import math
import random

import pytest
import sacrebleu
import torch
import torch.nn.functional as F
from rouge_score import rouge_scorer

from aigc_course.metrics.text import (
    bits_per_char,
    corpus_bleu,
    lcs_length,
    perplexity,
    perplexity_from_loss,
    rouge_l,
    rouge_n,
    sentence_bleu,
    tokenize_zh,
)

WORDS = "the a cat dog sat on mat ran fast slow red big".split()
HANZI = list("我你他的是在有人不了這那大小天地山水月光，。？")


def _sentence(rng, vocab, lo, hi, sep=" "):
    return sep.join(rng.choice(vocab) for _ in range(rng.randint(lo, hi)))


def _corpus(seed, vocab, sep=" ", n=20, n_refs=1, short_hyps=False):
    rng = random.Random(seed)
    refs = [[_sentence(rng, vocab, 3, 15, sep) for _ in range(n)] for _ in range(n_refs)]
    hi = 6 if short_hyps else 15
    hyps = []
    for i in range(n):  # half copied-and-edited references, half random
        if rng.random() < 0.5:
            toks = refs[0][i].split(sep) if sep else list(refs[0][i])
            toks = [t if rng.random() < 0.7 else rng.choice(vocab) for t in toks][:hi]
            hyps.append(sep.join(toks))
        else:
            hyps.append(_sentence(rng, vocab, 1, hi, sep))
    return hyps, refs


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n_refs", [1, 3])
@pytest.mark.parametrize("short", [False, True])  # True: hypotheses shorter -> brevity penalty
def test_corpus_bleu_matches_sacrebleu_words(seed, n_refs, short):
    hyps, refs = _corpus(seed, WORDS, n_refs=n_refs, short_hyps=short)
    ours = corpus_bleu(hyps, refs, tokenize="none")
    ref = sacrebleu.corpus_bleu(hyps, refs, tokenize="none", smooth_method="none")
    assert ours.score == pytest.approx(ref.score, rel=1e-6, abs=1e-9)
    assert ours.bp == pytest.approx(ref.bp, rel=1e-9)
    assert (ours.hyp_len, ours.ref_len) == (ref.sys_len, ref.ref_len)
    if short:
        assert ours.bp < 1.0
    ours_exp = corpus_bleu(hyps, refs, tokenize="none", smooth="exp")
    ref_exp = sacrebleu.corpus_bleu(hyps, refs, tokenize="none", smooth_method="exp")
    assert ours_exp.score == pytest.approx(ref_exp.score, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_corpus_bleu_matches_sacrebleu_chinese(seed):
    hyps, refs = _corpus(seed, HANZI, sep="", n_refs=2)
    ours = corpus_bleu(hyps, refs, tokenize="zh")
    ref = sacrebleu.corpus_bleu(hyps, refs, tokenize="zh", smooth_method="none")
    assert ours.score == pytest.approx(ref.score, rel=1e-6, abs=1e-9)
    assert ours.hyp_len == ref.sys_len


def test_tokenize_zh_mixed():
    assert tokenize_zh("我有3 apples，好。") == ["我", "有", "3", "apples", "，", "好", "。"]


def test_bleu_zero_match_and_perfect():
    assert corpus_bleu(["x y z w"], ["a b c d"]).score == 0.0
    assert sacrebleu.corpus_bleu(["x y z w"], [["a b c d"]], tokenize="none").score == 0.0
    # unigram matches but no 4-gram: 0 without smoothing, > 0 with "exp" (as sacrebleu)
    hyp, ref = ["a c b d"], ["a b c d"]
    assert corpus_bleu(hyp, ref).score == 0.0
    s = sacrebleu.corpus_bleu(hyp, [ref], tokenize="none", smooth_method="exp").score
    assert corpus_bleu(hyp, ref, smooth="exp").score == pytest.approx(s, rel=1e-6) and s > 0
    assert corpus_bleu(["a b c d e"], ["a b c d e"]).score == pytest.approx(100.0)


@pytest.mark.parametrize("seed", range(5))
def test_sentence_bleu_matches_sacrebleu(seed):
    hyps, refs = _corpus(seed, WORDS, n=10, n_refs=2)
    for i, h in enumerate(hyps):
        rs = [refs[0][i], refs[1][i]]
        ours = sentence_bleu(h, rs)
        ref = sacrebleu.sentence_bleu(h, rs, tokenize="none")
        assert ours.score == pytest.approx(ref.score, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("seed", range(8))
def test_rouge_matches_rouge_score(seed):
    rng = random.Random(seed)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    vocab = WORDS + ["Cat,", "DOG!", "mat.", "it's", "3-4"]
    for _ in range(20):
        hyp, ref = _sentence(rng, vocab, 0, 12), _sentence(rng, vocab, 1, 12)
        expected = scorer.score(ref, hyp)  # rouge-score takes (target, prediction)
        for ours, key in [(rouge_n(hyp, ref, 1), "rouge1"), (rouge_n(hyp, ref, 2), "rouge2"),
                          (rouge_l(hyp, ref), "rougeL")]:
            e = expected[key]
            assert (ours.precision, ours.recall, ours.fmeasure) == pytest.approx(
                (e.precision, e.recall, e.fmeasure), rel=1e-9, abs=1e-12)


def test_rouge_token_lists_and_chinese():
    r = rouge_n(list("我爱北京"), list("我爱上海"), 1)
    assert (r.precision, r.recall) == (0.5, 0.5)
    assert rouge_l("我爱北京天安门", "我在北京", tokenize="zh").recall == pytest.approx(3 / 4)  # 我 北 京
    assert lcs_length("ABCBDAB", "BDCABA") == 4


def test_perplexity_equals_exp_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(50, 30, generator=g), torch.randint(30, (50,), generator=g)
    mean = F.cross_entropy(logits, targets)
    total = F.cross_entropy(logits, targets, reduction="sum")
    assert perplexity(float(total), 50) == pytest.approx(math.exp(float(mean)), rel=1e-6)
    assert perplexity_from_loss(float(mean)) == pytest.approx(math.exp(float(mean)))
    # a uniform model over V symbols has perplexity V and log2(V) bits per symbol
    assert perplexity_from_loss(math.log(30)) == pytest.approx(30)
    assert bits_per_char(100 * math.log(30), 100) == pytest.approx(math.log2(30))


def test_bad_input():
    with pytest.raises(ValueError, match="non-empty"):
        corpus_bleu([], [])
    with pytest.raises(ValueError, match="one sentence per hypothesis"):
        corpus_bleu(["a b", "c"], ["a b"])
    with pytest.raises(ValueError, match="tokenize"):
        corpus_bleu(["a"], ["a"], tokenize="13a")
    with pytest.raises(ValueError, match="smooth"):
        corpus_bleu(["a"], ["a"], smooth="add-k")
    with pytest.raises(ValueError, match="n_tokens"):
        perplexity(1.0, 0)
    with pytest.raises(ValueError, match="n_chars"):
        bits_per_char(1.0, 0)
    with pytest.raises(ValueError, match="n must be"):
        rouge_n("a", "a", 0)
