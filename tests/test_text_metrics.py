"""Tests of aigc_course.metrics.text against sacrebleu, rouge-score and F.cross_entropy."""

import math
import random

import pytest
import sacrebleu
import torch
import torch.nn.functional as F
from data_marks import needs_data
from rouge_score import rouge_scorer
from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh

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


# Mixed text on which a "split the non-Chinese runs at spaces" tokenizer differs from sacrebleu's:
# times and percentages, Latin words in brackets, ASCII and full-width punctuation, straight and
# curly quotes, dashes and ellipses (U+2000 onwards counts as Chinese), emoji, odd spaces.
TRICKY_ZH = [
    "我在2:45起床。", "我在2:30起床。", "汤姆(Tom)说：“20%的人在6:30起床。”",
    "“你好吗？”“我很好，谢谢。”", '"几点了?""10点半了。"', '"他是對的嗎?" "我不這麼認為。"',
    "谢谢你借给我$500。", "价格是1,000.50元，约3.14. 还是3.", "变量的声明在C和C++中极其重要。",
    "Dr. Smith说：“Hello, world!” e.g., i.e.", "这—那…好的", "emoji😀测试👍🏽！",
    "全角ＡＢＣ１２３，半角abc123,", "  前后有空格\t和制表符  ", "a.,5 a..5 x.y ,a .5 5. 5.a",
    "5-3 a-b x--5 -5 2- 3-4-5", "it's Tom's 'quoted'",
    "<unk><unk>。", "\u2000x\u2001y\u3000z\u00a0w", "請\u200b\u200b借我", "a/b\\c{d}e[f]g^h_i`j|k~l@m#n&o*p=q;r",
    "鿏鿐 beyond U+9FBB, 𠀀 extension B", "ｶﾀｶﾅ 한국어 カタカナ ①②③ ㈠ ㎞ ☀✈", "", "   ", "。",
    "line\nbreak\r\nend", "‘单引号’、「直角引号」《书名号》【括号】～", "3.5%的增长，-2.5°C, 1e-5",
]


@pytest.mark.parametrize("text", TRICKY_ZH)
def test_tokenize_zh_matches_sacrebleu_on_mixed_text(text):
    assert tokenize_zh(text) == TokenizerZh()(text).split()


@pytest.mark.parametrize("sep", ["x", "5"])
def test_tokenize_zh_matches_sacrebleu_on_every_code_point(sep):
    # which characters count as Chinese: all of the BMP, and a sample of the other planes (none
    # of which sacrebleu counts, extension B included); "5" also puts every mark next to a digit
    points = [*range(0x10000), *range(0x10000, 0x110000, 251), 0x20000, 0x2A6D6, 0x2F800, 0x2FA1D]
    text = sep.join(chr(c) for c in points)
    assert tokenize_zh(text) == TokenizerZh()(text).split()


def test_tokenize_zh_matches_sacrebleu_on_random_text():
    # random strings over the characters the rules treat specially, to reach every rule and the
    # order in which they apply (e.g. "a.,5" keeps ",5" whole, "a..5" keeps ".5")
    alphabet = list("0123456789..,,--'aZ :%()$\"/?!<>") + list("我在的，。！？、“”‘’（）１Ａ") + [
        " ", "\t", "\n", "\u00a0", "\u2000", "\u2001", "\u200b", "\u2014", "\u2026", "\u3000",
        "\u9fbb", "\u9fbc", "\U00020000", "😀", "é", "ß", "\uffef", "\ufff0", "\u33ff", "\u3400"]
    rng, zh = random.Random(0), TokenizerZh()
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert tokenize_zh(text) == zh(text).split(), repr(text)


def test_zh_bleu_issue_example():
    ours = corpus_bleu(["我在2:45起床。"], [["我在2:30起床。"]], tokenize="zh")
    ref = sacrebleu.corpus_bleu(["我在2:45起床。"], [["我在2:30起床。"]], tokenize="zh", smooth_method="none")
    assert ref.score == pytest.approx(50.0)
    assert ours.score == pytest.approx(ref.score, abs=1e-9)
    assert (ours.hyp_len, ours.ref_len) == (ref.sys_len, ref.ref_len) == (8, 8)


def _edit_one_char(rng, text, chars):
    """``text`` with one character replaced (or a character appended to an empty text)."""
    if not text:
        return rng.choice(chars)
    i = rng.randrange(len(text))
    return text[:i] + rng.choice(chars) + text[i + 1:]


def _check_zh_bleu_like_sacrebleu(sentences, seed=0):
    """Corpus BLEU (both smoothings) and sentence BLEU, tokenize="zh", equal sacrebleu's to 1e-9."""
    rng = random.Random(seed)
    chars = sorted(set("".join(sentences))) + list("2:30%()“”—")
    hyps = [_edit_one_char(rng, s, chars) for s in sentences]
    shuffled = sentences[:]
    rng.shuffle(shuffled)
    for refs in ([sentences], [sentences, shuffled]):
        for smooth in ("none", "exp"):
            ours = corpus_bleu(hyps, refs, tokenize="zh", smooth=smooth)
            ref = sacrebleu.corpus_bleu(hyps, refs, tokenize="zh", smooth_method=smooth)
            assert ours.score == pytest.approx(ref.score, abs=1e-9)
            assert (ours.hyp_len, ours.ref_len) == (ref.sys_len, ref.ref_len)
            assert (ours.correct, ours.total) == (ref.counts, ref.totals)
        # the shuffled stream as hypotheses: few matches, a zero 4-gram order is likely
        ours = corpus_bleu(shuffled, [sentences], tokenize="zh")
        assert ours.score == pytest.approx(sacrebleu.corpus_bleu(
            shuffled, [sentences], tokenize="zh", smooth_method="none").score, abs=1e-9)
    for h, r in list(zip(hyps, sentences))[:300]:
        ref = sacrebleu.sentence_bleu(h, [r], tokenize="zh")  # exp smoothing, effective order
        assert sentence_bleu(h, [r], tokenize="zh").score == pytest.approx(ref.score, abs=1e-9)


def test_zh_bleu_matches_sacrebleu_on_mixed_text():
    _check_zh_bleu_like_sacrebleu([t for t in TRICKY_ZH if t.strip()])


@needs_data
def test_zh_tokenizer_and_bleu_match_sacrebleu_on_course_data():
    from aigc_course.data import load_en_zh

    sentences = [p.zh for p in load_en_zh()]
    zh = TokenizerZh()
    differ = [s for s in sentences if tokenize_zh(s) != zh(s).split()]
    assert not differ, f"{len(differ)} lines tokenized unlike sacrebleu, e.g. {differ[:5]}"
    # BLEU on every line with something besides Chinese characters (~1,200: digits, Latin words,
    # ASCII punctuation) and every 20th other line; all 26,388 would take minutes on a small CPU
    mixed = [s for s in sentences if any(len(t) > 1 or t.isascii() for t in zh(s).split())]
    assert len(mixed) > 1000
    _check_zh_bleu_like_sacrebleu(mixed + sentences[::20])


def test_corpus_bleu_missing_references_like_sacrebleu():
    # None in a reference stream: that sentence has fewer references (sacrebleu skips the None)
    hyps = ["a b c d e", "a b c x", "the cat sat on the mat"]
    refs = [["a b c d e", "a b c y z", None], [None, "a b c x", "the cat sat on a mat"],
            ["a b", None, "a cat sat on the mat"]]
    for smooth in ("none", "exp"):
        ours = corpus_bleu(hyps, refs, smooth=smooth)
        ref = sacrebleu.corpus_bleu(hyps, refs, tokenize="none", smooth_method=smooth)
        assert ours.score == pytest.approx(ref.score, abs=1e-9)
        assert (ours.hyp_len, ours.ref_len, ours.correct) == (ref.sys_len, ref.ref_len, ref.counts)
    # the issue's shape: the second stream lacks a reference for the first sentence
    hyps = ["我在2:45起床。", "a b c x"]
    refs = [["我在2:30起床。", "a b c d"], [None, "a b c x"]]
    ours = corpus_bleu(hyps, refs, tokenize="zh")
    assert ours.score == pytest.approx(sacrebleu.corpus_bleu(
        hyps, refs, tokenize="zh", smooth_method="none").score, abs=1e-9)
    # an empty string is a reference of length 0, not a missing one (as sacrebleu)
    refs = [["a b c d e", ""], [None, "x"], [None, None]]
    ours = corpus_bleu(hyps[1:] + ["a b c d e"], [r[::-1] for r in refs])
    ref = sacrebleu.corpus_bleu(hyps[1:] + ["a b c d e"], [r[::-1] for r in refs], tokenize="none",
                                smooth_method="none")
    assert (ours.score, ours.ref_len) == (pytest.approx(ref.score, abs=1e-9), ref.ref_len)
    s = sentence_bleu("a b c x", ["a b c x y", None])
    assert s.score == pytest.approx(sacrebleu.sentence_bleu("a b c x", ["a b c x y", None],
                                                            tokenize="none").score, abs=1e-9)


def test_corpus_bleu_rejects_bad_references():
    with pytest.raises(ValueError, match=r"sentence 1 has no reference"):
        corpus_bleu(["a b", "c d"], [["a b", None], ["a", None]])  # sacrebleu fails on it too
    with pytest.raises(ValueError, match=r"sentence 0 has no reference"):
        corpus_bleu(["a b"], [None])
    with pytest.raises(ValueError, match=r"stream 1 has 1 sentences.*2 hypotheses"):
        corpus_bleu(["a b", "c d"], [["a b", "c d"], ["a b"]])  # sacrebleu would cut to 1
    with pytest.raises(ValueError, match=r"reference 0 of sentence 1 .* int"):
        corpus_bleu(["a b", "c d"], [["a b", 3]])
    with pytest.raises(ValueError, match=r"hypothesis 1 .* NoneType"):
        corpus_bleu(["a b", None], [["a b", "c d"]])
    with pytest.raises(ValueError, match=r"hypothesis 0 .* float"):
        sentence_bleu(1.5, ["a b"])
    with pytest.raises(ValueError, match=r"no reference"):
        sentence_bleu("a b", [None])


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
