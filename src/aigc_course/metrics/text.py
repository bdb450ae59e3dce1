"""Text-generation metrics written for teaching: perplexity, BLEU, ROUGE-N and ROUGE-L.

Taught in part 3, "3.4 The language-model pipeline and the AIGC system workflow", and used by
the language chapters of part 5. Each function matches a reference implementation, which
``tests/test_text_metrics.py`` checks: BLEU against ``sacrebleu`` (Post, 2018), ROUGE against
Google's ``rouge-score`` (Lin, 2004), perplexity against ``F.cross_entropy``.

Units matter:

* perplexity is ``exp(mean negative log-likelihood per token)``, so it is *per token of a given
  tokenizer*: a character model and a BPE model on the same text are not comparable by it;
* bits per character, ``total NLL in nats / (number of characters * ln 2)``, is: it divides the
  same total by the same number of characters whatever the tokenizer.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# ----------------------------------------------------------------------------- perplexity


def perplexity(nll_sum: float, n_tokens: int) -> float:
    """exp(total NLL in nats / number of tokens): the per-token perplexity."""
    if n_tokens <= 0:
        raise ValueError(f"n_tokens must be > 0, got {n_tokens}.")
    return math.exp(nll_sum / n_tokens)


def perplexity_from_loss(mean_nll: float) -> float:
    """exp(mean cross-entropy in nats per token), e.g. of ``F.cross_entropy`` (not bits)."""
    return math.exp(mean_nll)


def bits_per_char(nll_sum: float, n_chars: int) -> float:
    """Total NLL in nats -> bits per character, comparable across tokenizers."""
    if n_chars <= 0:
        raise ValueError(f"n_chars must be > 0, got {n_chars}.")
    return nll_sum / (n_chars * math.log(2))


# ---------------------------------------------------------------------------- tokenizers

# What sacrebleu's "zh" tokenizer counts as Chinese, as inclusive code-point ranges: CJK
# ideographs, radicals, strokes, bopomofo, CJK punctuation and enclosed forms, vertical and
# full-width/half-width forms. Its table spells the supplementary-plane rows as
# "\u20000"-"\u2a6d6", which Python reads as a 4-digit escape plus a digit, so they match
# U+2001..U+2A6D instead: general punctuation (curly quotes, dashes, ellipsis, zero-width space),
# arrows, maths, dingbats; extension B itself is not matched. The quirk is kept on purpose: the
# aim is sacrebleu's scores, not a better definition of "Chinese".
_ZH_RANGES = [
    (0x2001, 0x2A6D), (0x2E80, 0x2EFF), (0x2F00, 0x2FDF), (0x2FF0, 0x303F), (0x3100, 0x312F),
    (0x31A0, 0x31EF), (0x3200, 0x4DB5), (0x4E00, 0x9FBB), (0xF900, 0xFA2D), (0xFA30, 0xFA6A),
    (0xFA70, 0xFAD9), (0xFE10, 0xFE1F), (0xFE30, 0xFE4F), (0xFF00, 0xFFEF),
]
_ZH_CHAR = re.compile("[" + "".join(f"\\u{a:04x}-\\u{b:04x}" for a, b in _ZH_RANGES) + "]")
# mteval-v13a's punctuation rules (NIST's mteval-v13a.pl, the second stage of sacrebleu's "zh"):
# ASCII punctuation and symbols except ' , - . always become tokens ("2:30" -> 2 : 30, "(Tom)",
# "20%"); str.translate does it in one pass.
_SPACE_PUNCT = str.maketrans({c: f" {c} " for c in set(string.punctuation) - set("',-.")})
# A period or comma is split off when the character before it is not a digit (first rule) or the
# one after it is not (second rule), so "3.14" and "1,000" stay whole. Each rule is ONE
# left-to-right pass of two-character matches that cannot overlap: a mark the first rule split
# off cannot be the "non-digit" before the next mark, which is why "a.,5" gives a . ,5 and "a..5"
# gives a . .5. A lookbehind would not reproduce that, hence the two-character patterns.
_PERIOD_AFTER_NONDIGIT = re.compile(r"([^0-9])([.,])")
_PERIOD_BEFORE_NONDIGIT = re.compile(r"([.,])([^0-9])")
_HYPHEN_AFTER_DIGIT = re.compile(r"(?<=[0-9])-")  # "5-3" -> 5 - 3, but "a-b" and "-5" stay


def tokenize_zh(text: str) -> list[str]:
    """Chinese BLEU tokens as sacrebleu (Post, 2018), tokenizer 'zh'; used in chapters 3.4 and 5.4.

    1. strip the line, then put spaces around every "Chinese" character (``_ZH_RANGES``);
    2. apply the mteval-v13a punctuation rules to the whole line: ASCII punctuation becomes tokens,
       except ``'`` (never split), ``-`` (split only after a digit) and ``.`` ``,`` (kept
       between digits);
    3. split at whitespace.

    So "我在2:30起床。" -> 我 在 2 : 30 起 床 。 and "“Tom”" -> “ Tom ”: runs of ASCII letters and
    digits stay whole ("2009", "Tom"), full-width ones are "Chinese" (one token per character).
    Written to give the same tokens as sacrebleu's ``TokenizerZh`` on any string, which
    ``tests/test_text_metrics.py`` checks on every code point, on random strings and on the
    course's en-zh data.
    """
    line = _ZH_CHAR.sub(r" \g<0> ", text.strip())  # strip first: " .5" and ".5" differ below
    line = line.translate(_SPACE_PUNCT)
    line = _PERIOD_AFTER_NONDIGIT.sub(r"\1 \2 ", line)
    line = _PERIOD_BEFORE_NONDIGIT.sub(r" \1 \2", line)
    return _HYPHEN_AFTER_DIGIT.sub(" - ", line).split()


def tokenize_rouge(text: str) -> list[str]:
    """rouge-score's default: lowercase, keep runs of [a-z0-9] (everything else separates)."""
    return re.findall(r"[a-z0-9]+", text.lower())


TOKENIZERS: dict[str, Callable[[str], list[str]]] = {
    "none": str.split,  # pre-tokenized text: split at whitespace (sacrebleu tokenize="none")
    "zh": tokenize_zh,
    "rouge": tokenize_rouge,
}


def _tokens(x, tokenize) -> list[str]:
    if isinstance(x, str):
        fn = TOKENIZERS.get(tokenize) if isinstance(tokenize, str) else tokenize
        if fn is None:
            raise ValueError(f"Unknown tokenize={tokenize!r}; use one of {list(TOKENIZERS)} or a function.")
        return fn(x)
    return list(x)  # already a list of tokens


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    """Counts of the n-grams (as tuples) of a token list."""
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


# ------------------------------------------------------------------------------------ BLEU


@dataclass
class BLEUResult:
    score: float  # 0..100, as sacrebleu reports it
    precisions: list[float]  # modified n-gram precisions p_n, in percent
    bp: float  # brevity penalty
    hyp_len: int
    ref_len: int
    correct: list[int]
    total: list[int]


def _is_sentence(x) -> bool:
    if isinstance(x, (list, tuple)):  # a sentence given as a list of tokens
        return all(isinstance(t, str) for t in x)
    return isinstance(x, str)


def _check_streams(hypotheses, references) -> list:
    """Validate the inputs; return the references as a list of streams (lists of sentences)."""
    if isinstance(hypotheses, str) or not len(hypotheses):
        raise ValueError("hypotheses must be a non-empty list of sentences.")
    for i, h in enumerate(hypotheses):  # sacrebleu refuses None hypotheses too
        if not _is_sentence(h):
            raise ValueError(f"hypothesis {i} must be a string or a list of tokens; "
                             f"got {type(h).__name__}: {h!r:.40}")
    if isinstance(references, str):
        references = [references]
    if references and all(r is None or isinstance(r, str) for r in references):
        references = [references]  # one reference per sentence, given as a flat list
    if not references:
        raise ValueError("references must be a non-empty list of reference streams.")
    for k, stream in enumerate(references):
        if isinstance(stream, str) or not isinstance(stream, (list, tuple)):
            raise ValueError(f"reference stream {k} must be a list of sentences; "
                             f"got {type(stream).__name__}.")
        if len(stream) != len(hypotheses):  # sacrebleu would silently cut to the shortest
            raise ValueError(f"reference stream {k} has {len(stream)} sentences but there are "
                             f"{len(hypotheses)} hypotheses: each stream needs one sentence per "
                             f"hypothesis (None where a sentence has fewer references).")
        for i, r in enumerate(stream):
            if r is not None and not _is_sentence(r):
                raise ValueError(f"reference {k} of sentence {i} must be a string, a list of "
                                 f"tokens or None; got {type(r).__name__}: {r!r:.40}")
    return references


def _bleu_stats(hypotheses, references, max_n, tokenize):
    """Sufficient statistics: clipped matches and totals per order, lengths (Papineni et al.)."""
    references = _check_streams(hypotheses, references)
    correct, total, hyp_len, ref_len = [0] * max_n, [0] * max_n, 0, 0
    for i, hyp in enumerate(hypotheses):
        h = _tokens(hyp, tokenize)
        # None = no k-th reference for this sentence: it is skipped, as in sacrebleu. An empty
        # string is a reference of length 0. A sentence with no reference at all has no
        # reference length for the brevity penalty (sacrebleu fails on it), so it is an error.
        refs = [_tokens(stream[i], tokenize) for stream in references if stream[i] is not None]
        if not refs:
            raise ValueError(f"sentence {i} has no reference: it is None in every stream.")
        hyp_len += len(h)
        # the reference length closest to the hypothesis length (ties: the shorter one)
        ref_len += min((abs(len(r) - len(h)), len(r)) for r in refs)[1]
        for n in range(1, max_n + 1):
            h_counts = ngrams(h, n)
            max_ref = Counter()
            for r in refs:
                max_ref |= ngrams(r, n)  # element-wise max over references
            correct[n - 1] += sum(min(c, max_ref[g]) for g, c in h_counts.items())  # clipped
            total[n - 1] += sum(h_counts.values())
    return correct, total, hyp_len, ref_len


def _bleu_from_stats(correct, total, hyp_len, ref_len, smooth, effective_order) -> BLEUResult:
    # brevity penalty BP = 1 if c > r else exp(1 - r / c)
    bp = 1.0 if hyp_len >= ref_len else (math.exp(1 - ref_len / hyp_len) if hyp_len > 0 else 0.0)
    max_n = len(correct)
    precisions = [0.0] * max_n
    if not any(correct):
        return BLEUResult(0.0, precisions, bp, hyp_len, ref_len, correct, total)
    order, halve = max_n, 1.0
    for n in range(1, max_n + 1):
        if total[n - 1] == 0:
            break  # hypotheses too short to have n-grams of this order
        if effective_order:
            order = n
        if correct[n - 1] > 0:
            precisions[n - 1] = 100.0 * correct[n - 1] / total[n - 1]
        elif smooth == "exp":  # NIST smoothing: 1/2, 1/4, ... of a match per zero order
            halve *= 2
            precisions[n - 1] = 100.0 / (halve * total[n - 1])
    if any(p == 0.0 for p in precisions[:order]):
        score = 0.0  # a zero precision makes the geometric mean zero
    else:  # BLEU = BP * exp(mean of log p_n)
        score = bp * math.exp(sum(math.log(p) for p in precisions[:order]) / order)
    return BLEUResult(score, precisions, bp, hyp_len, ref_len, correct, total)


def corpus_bleu(hypotheses: Sequence, references: Sequence, max_n: int = 4,
                tokenize: str | Callable = "none", smooth: str = "none") -> BLEUResult:
    """Corpus BLEU (Papineni et al., 2002): statistics are summed over sentences first.

    Args:
        hypotheses: a list of sentences (strings, or lists of tokens).
        references: a list of reference *streams*, ``references[k][i]`` the k-th reference of
            sentence i (as sacrebleu); a flat list of strings means one reference per sentence.
            ``None`` in a stream: sentence i has fewer references (sacrebleu skips it too); every
            sentence needs at least one, and every stream one entry per hypothesis.
        tokenize: "none" (split at spaces), "zh" (sacrebleu's: one token per Chinese character,
            mteval-v13a punctuation rules elsewhere, see :func:`tokenize_zh`) or a function.
        smooth: "none" (the paper's BLEU, sacrebleu ``smooth_method="none"``) or "exp".
    """
    if smooth not in ("none", "exp"):
        raise ValueError(f"smooth must be 'none' or 'exp', got {smooth!r}.")
    return _bleu_from_stats(*_bleu_stats(hypotheses, references, max_n, tokenize), smooth, False)


def sentence_bleu(hypothesis, references: Sequence, max_n: int = 4,
                  tokenize: str | Callable = "none", smooth: str = "exp") -> BLEUResult:
    """BLEU of one sentence, with sacrebleu's defaults for sentences: "exp" smoothing (a zero
    n-gram order counts as 1/2, then 1/4, ... of a match) and the effective order (orders longer
    than the hypothesis are left out). Without smoothing most short sentences would score 0."""
    if isinstance(references, str) or references is None:
        references = [references]
    if smooth not in ("none", "exp"):
        raise ValueError(f"smooth must be 'none' or 'exp', got {smooth!r}.")
    stats = _bleu_stats([hypothesis], [[r] for r in references], max_n, tokenize)
    return _bleu_from_stats(*stats, smooth, True)


# ----------------------------------------------------------------------------------- ROUGE


@dataclass
class PRF:
    precision: float
    recall: float
    fmeasure: float


def _prf(overlap: int, n_hyp: int, n_ref: int) -> PRF:
    p = overlap / n_hyp if n_hyp else 0.0
    r = overlap / n_ref if n_ref else 0.0
    return PRF(p, r, 2 * p * r / (p + r) if p + r > 0 else 0.0)


def rouge_n(hypothesis, reference, n: int = 1, tokenize: str | Callable = "rouge") -> PRF:
    """ROUGE-N (Lin, 2004): n-gram overlap; recall over the reference, precision over the output."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    h, r = ngrams(_tokens(hypothesis, tokenize), n), ngrams(_tokens(reference, tokenize), n)
    overlap = sum((h & r).values())  # clipped counts: min over the two
    return _prf(overlap, sum(h.values()), sum(r.values()))


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence, by dynamic programming in O(len(a) len(b))."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(hypothesis, reference, tokenize: str | Callable = "rouge") -> PRF:
    """ROUGE-L: P = LCS / len(output), R = LCS / len(reference), F = their harmonic mean."""
    h, r = _tokens(hypothesis, tokenize), _tokens(reference, tokenize)
    return _prf(lcs_length(h, r), len(h), len(r))
