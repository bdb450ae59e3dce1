"""Cloze exercises from a masked language model, and adaptive practice with a Rasch model (chapter 6.3).

Cloze items (fill in the blank, four options) from the mini BERT of chapter 5.5:

1. choose one word of a held-out sentence and mask it; the masked LM gives ``p(answer)``;
2. the item's difficulty is the model's doubt, ``b = -logit p(answer)`` (a confident model: an
   easy item, negative ``b``);
3. candidate distractors are the model's top-k words, minus the answer, special tokens, words of
   another kind (punctuation, numbers) and other forms of the answer (``go`` / ``goes``);
4. the item is rejected as **ambiguous** if a candidate gets at least ``ambiguity_ratio`` times the
   probability of the answer, or if putting a candidate in the blank gives a sentence that occurs
   in the corpus (then it is demonstrably correct too);
5. the distractors are the next ``n_distractors`` candidates the model still finds plausible
   (``p >= min_prob``); fewer than that: the item is rejected.

Adaptive practice (Rasch 1960, the one-parameter item response model): a learner of ability
``theta`` answers an item of difficulty ``b`` correctly with probability ``sigmoid(theta - b)``.
:func:`simulate_practice` runs many *simulated* learners at once: each answers ``n_items`` items,
chosen near the current ability estimate (where a Rasch item is most informative) or at random,
and the estimate is updated online by Elo's rule or as the posterior mean on a grid (EAP).

The guarded "real thing": an instruct LLM writes items in a fixed line format
(:data:`LLM_PROMPT`); :func:`check_llm_item` accepts one only if its key restores the source text
word for word and no distractor does.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from aigc_course.text.vocab import tokenize_en


@dataclass
class ClozeConfig:
    top_k: int = 30  # candidates read from the model at each blank
    n_distractors: int = 3
    min_prob: float = 0.002  # plausibility: the model must give a distractor at least this much
    ambiguity_ratio: float = 0.5  # reject if a candidate gets >= ratio * p(answer)
    skip_top: int = 0  # the most frequent words (function words) are neither blanked nor distractors
    batch_size: int = 256

    def __post_init__(self):
        if self.ambiguity_ratio <= 0 or self.n_distractors < 1 or self.top_k <= self.n_distractors:
            raise ValueError(f"Need ambiguity_ratio > 0 (got {self.ambiguity_ratio}), n_distractors >= 1 "
                             f"(got {self.n_distractors}) and top_k > n_distractors (got {self.top_k}).")


@dataclass
class ClozeItem:
    words: list[str]  # the original sentence
    position: int  # index of the blank
    answer: str  # the key: always the original word
    p_answer: float  # the model's probability of the key
    model_top1: str  # the model's likeliest word at the blank (any token)
    distractors: list[str] = field(default_factory=list)
    distractor_probs: list[float] = field(default_factory=list)
    status: str = "accepted"  # "accepted", "ambiguous" or "no distractors"
    reason: str = ""

    @property
    def difficulty(self) -> float:
        """``b = -logit p(answer)``: the Rasch difficulty given by the model's confidence."""
        p = min(max(self.p_answer, 1e-6), 1 - 1e-6)
        return -float(torch.logit(torch.tensor(p)))

    def prompt(self) -> str:
        return " ".join("____" if i == self.position else w for i, w in enumerate(self.words))

    def options(self, seed: int = 0) -> list[str]:
        """The key and the distractors in a seeded random order."""
        opts = [self.answer, *self.distractors]
        random.Random(seed).shuffle(opts)
        return opts


def word_kind(w: str) -> str:
    """'word' (letters, maybe an apostrophe), 'number', or 'other' (punctuation, symbols)."""
    if w.replace("'", "").isalpha():
        return "word"
    return "number" if w.isdigit() else "other"


def is_variant(a: str, b: str) -> bool:
    """True for another form of the same word (one is a prefix of the other: go / goes / gone)."""
    return len(a) >= 2 and len(b) >= 2 and (a.startswith(b) or b.startswith(a))


def frequent_ids(vocab, skip_top: int) -> set[int]:
    """Ids of the special tokens and of the ``skip_top`` most frequent words (a :class:`Vocab`
    built by ``Vocab.build`` lists its words most frequent first)."""
    n_special = sum(t.startswith("<") and t.endswith(">") for t in vocab.tokens[:8])
    return set(range(n_special + skip_top)) | {i for i, t in enumerate(vocab.tokens) if t.startswith("[")}


def choose_blanks(sentences: list[list[str]], vocab, seed: int = 0, skip_top: int = 0) -> list[int]:
    """One blank per sentence: a random word (letters) that the vocabulary knows and that is not
    among its ``skip_top`` most frequent; -1 if there is none."""
    rng = random.Random(seed)
    skip = frequent_ids(vocab, skip_top)
    out = []
    for s in sentences:
        ok = [i for i, w in enumerate(s) if word_kind(w) == "word" and vocab.stoi.get(w, 0) not in skip]
        out.append(rng.choice(ok) if ok else -1)
    return out


@torch.no_grad()
def blank_probs(model, vocab, sentences: list[list[str]], positions: list[int], batch_size: int = 256) -> torch.Tensor:
    """The masked LM's distribution at each blank: (N, V) for N sentences with one [MASK] each."""
    if len(sentences) != len(positions) or not sentences:
        raise ValueError(f"Need one blank position per sentence, got {len(sentences)} sentences "
                         f"and {len(positions)} positions.")
    mask_id, pad_id = model.config.mask_id, model.config.pad_id or 0
    device = model.lm_head.weight.device
    model.eval()
    out = []
    for i in range(0, len(sentences), batch_size):
        rows = [vocab.encode(s) for s in sentences[i : i + batch_size]]
        pos = positions[i : i + batch_size]
        T = max(len(r) for r in rows)
        x = torch.full((len(rows), T), pad_id)  # (B, T)
        for j, (r, p) in enumerate(zip(rows, pos)):
            x[j, : len(r)] = torch.tensor(r)
            x[j, p] = mask_id
        logits = model(x.to(device))[torch.arange(len(rows)), torch.tensor(pos, device=device)]  # (B, V)
        out.append(F.softmax(logits.float(), dim=-1).cpu())
    return torch.cat(out)


def make_cloze(model, vocab, sentences: list[list[str]], cfg: ClozeConfig | None = None, seed: int = 0,
               corpus: set[tuple[str, ...]] | None = None) -> list[ClozeItem]:
    """One candidate item per sentence (steps 1-5 of the module doc), accepted or rejected with a reason.

    ``corpus``: sentences (tuples of words) that count as correct; a distractor that turns the item
    into one of them makes it ambiguous.
    """
    cfg = cfg or ClozeConfig()
    positions = choose_blanks(sentences, vocab, seed, cfg.skip_top)
    kept = [(s, p) for s, p in zip(sentences, positions) if p >= 0]
    if not kept:
        raise ValueError("No sentence has a word the vocabulary knows: nothing to blank out.")
    probs = blank_probs(model, vocab, [s for s, _ in kept], [p for _, p in kept], cfg.batch_size)
    special = frequent_ids(vocab, cfg.skip_top)
    corpus = corpus or set()
    items = []
    for (s, p), pr in zip(kept, probs):
        answer = s[p]
        top = pr.topk(cfg.top_k)
        item = ClozeItem(list(s), p, answer, float(pr[vocab.stoi[answer]]), vocab.tokens[int(top.indices[0])])
        cands = [(vocab.tokens[i], float(q)) for q, i in zip(top.values.tolist(), top.indices.tolist())
                 if i not in special and vocab.tokens[i] != answer]
        cands = [(w, q) for w, q in cands if word_kind(w) == word_kind(answer) and not is_variant(w, answer)]
        close = [w for w, q in cands if q >= cfg.ambiguity_ratio * item.p_answer]
        attested = [w for w, _ in cands if tuple(s[:p] + [w] + s[p + 1 :]) in corpus]
        plausible = [(w, q) for w, q in cands if q >= cfg.min_prob][: cfg.n_distractors]
        reasons = ([f"the model finds '{close[0]}' nearly as likely"] if close else []) + \
            ([f"with '{attested[0]}' the sentence occurs in the corpus"] if attested else [])
        if reasons:
            item.status, item.reason = "ambiguous", "; ".join(reasons)
        elif len(plausible) < cfg.n_distractors:
            item.status, item.reason = "no distractors", f"only {len(plausible)} plausible candidates"
        else:
            item.distractors, item.distractor_probs = [w for w, _ in plausible], [q for _, q in plausible]
        items.append(item)
    return items


def random_distractors(items: list[ClozeItem], vocab, counts: Counter, n: int = 3, seed: int = 0) -> list[list[str]]:
    """A baseline: for each item, ``n`` words of the same kind drawn by corpus frequency."""
    rng = random.Random(seed)
    pool = [w for w in vocab.tokens if w in counts]
    weights = [counts[w] for w in pool]
    out = []
    for it in items:
        picks: list[str] = []
        while len(picks) < n:
            w = rng.choices(pool, weights)[0]
            if word_kind(w) == word_kind(it.answer) and w != it.answer and not is_variant(w, it.answer) \
                    and w not in picks:
                picks.append(w)
        out.append(picks)
    return out


def bigram_guess_accuracy(items: list[ClozeItem], options: list[list[str]], bigrams: Counter) -> float:
    """Accuracy of a test-taker who only looks at the neighbours: it picks the option whose pairs
    (left word, option) and (option, right word) were seen most often. Low = the distractors hold
    up locally; chance is 1 / (number of options)."""
    correct = 0.0
    for it, distr in zip(items, options):
        left = it.words[it.position - 1] if it.position > 0 else "<s>"
        right = it.words[it.position + 1] if it.position + 1 < len(it.words) else "</s>"
        score = {w: bigrams[(left, w)] + bigrams[(w, right)] for w in [it.answer, *distr]}
        best = max(score.values())
        winners = [w for w, v in score.items() if v == best]
        correct += (it.answer in winners) / len(winners)  # ties: a fair coin among the best
    return correct / max(1, len(items))


def sentence_bigrams(sentences: list[list[str]]) -> Counter:
    """Counts of neighbouring word pairs, with sentence boundaries ``<s>`` and ``</s>``."""
    c = Counter()
    for s in sentences:
        padded = ["<s>", *s, "</s>"]
        c.update(zip(padded, padded[1:]))
    return c


# ---------------------------------------------------------------- the Rasch model and the simulated learners
def rasch_p(theta: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """P(correct) = sigmoid(theta - b), the one-parameter logistic (Rasch) model."""
    return torch.sigmoid(theta - b)


@dataclass
class PracticeConfig:
    n_items: int = 30  # items each learner answers
    select: str = "adaptive"  # "adaptive": the unused item whose b is nearest the estimate; "random"
    estimator: str = "eap"  # "eap": posterior mean on a grid, prior N(0, 1); "elo": theta += k (y - p)
    elo_k: float = 0.4
    grid: int = 161  # grid points on [-5, 5] for EAP

    def __post_init__(self):
        if self.select not in ("adaptive", "random") or self.estimator not in ("eap", "elo"):
            raise ValueError(f"select must be 'adaptive' or 'random' and estimator 'eap' or 'elo', "
                             f"got {self.select!r} and {self.estimator!r}.")


def simulate_practice(b_model: torch.Tensor, b_true: torch.Tensor, theta: torch.Tensor, cfg: PracticeConfig,
                      seed: int = 0) -> dict[str, torch.Tensor]:
    """Simulated learners (L,) of true ability ``theta`` practise on a pool of I items.

    The learners answer by the Rasch model with the *true* difficulties ``b_true`` (I,); the
    tutor only knows ``b_model`` (I,), the difficulties from the model's confidence.

    Returns ``estimate`` (L, n_items + 1): the ability estimate before each item and after the
    last; ``predicted`` (L, n_items): the tutor's P(correct) before each answer; ``correct``
    (L, n_items): the simulated answers (0/1); ``items`` (L, n_items): the items asked.
    """
    L, I = len(theta), len(b_model)
    if b_true.shape != b_model.shape or cfg.n_items > I:
        raise ValueError(f"b_model and b_true must have one entry per item, and n_items ({cfg.n_items}) "
                         f"at most the pool size ({I}).")
    g = torch.Generator().manual_seed(seed)
    used = torch.zeros(L, I, dtype=torch.bool)
    grid = torch.linspace(-5, 5, cfg.grid)  # (G,)
    log_post = (-0.5 * grid**2).expand(L, -1).clone()  # (L, G), the N(0, 1) prior
    est = torch.zeros(L)
    rows = torch.arange(L)
    history = {k: [] for k in ("estimate", "predicted", "correct", "items")}
    for _ in range(cfg.n_items):
        if cfg.select == "adaptive":
            gap = (b_model[None, :] - est[:, None]).abs().masked_fill(used, float("inf"))  # (L, I)
            item = gap.argmin(dim=1)
        else:
            item = torch.rand(L, I, generator=g).masked_fill(used, -1.0).argmax(dim=1)
        used[rows, item] = True
        p_hat = rasch_p(est, b_model[item])
        y = (torch.rand(L, generator=g) < rasch_p(theta, b_true[item])).float()
        for k, v in zip(history, (est, p_hat, y, item)):
            history[k].append(v.clone())
        if cfg.estimator == "elo":
            est = est + cfg.elo_k * (y - p_hat)
        else:
            p_grid = rasch_p(grid[None, :], b_model[item][:, None])  # (L, G)
            log_post += torch.where(y[:, None] > 0, p_grid.log(), (1 - p_grid).log())
            est = (F.softmax(log_post, dim=1) * grid).sum(dim=1)
    history["estimate"].append(est.clone())
    return {k: torch.stack(v, dim=1) for k, v in history.items()}


def reliability_bins(predicted: torch.Tensor, observed: torch.Tensor, n_bins: int = 10):
    """(mean predicted, observed rate, count) in ``n_bins`` equal-width bins of the prediction,
    and the expected calibration error (count-weighted mean of |observed - predicted|)."""
    p, y = predicted.flatten().float(), observed.flatten().float()
    if p.shape != y.shape or not len(p):
        raise ValueError("predicted and observed must have the same, non-zero number of entries.")
    idx = (p * n_bins).long().clamp(max=n_bins - 1)
    count = torch.bincount(idx, minlength=n_bins).float()
    mean_p = torch.bincount(idx, p, minlength=n_bins) / count.clamp(min=1)
    rate = torch.bincount(idx, y, minlength=n_bins) / count.clamp(min=1)
    ece = float(((rate - mean_p).abs() * count).sum() / count.sum())
    return mean_p, rate, count, ece


# ---------------------------------------------------------------- the real thing: exercises from an instruct LLM
LLM_PROMPT = ("Write {n} fill-in-the-blank exercises for learners of English from the text below. For each, "
              "copy one sentence of the text exactly, replace one word with ___, then give the missing word "
              "and three wrong options. Write one exercise per line, nothing else, in the form:\n"
              "sentence with ___ | missing word | wrong1, wrong2, wrong3\n\nText:\n{text}")
_BLANK = re.compile(r"_{2,}")


def parse_llm_items(reply: str) -> list[dict]:
    """The lines of ``reply`` in the form ``stem | answer | d1, d2, d3`` as dicts; other lines are skipped."""
    items = []
    for line in reply.splitlines():
        parts = [p.strip() for p in line.strip().lstrip("0123456789.-) ").split("|")]
        if len(parts) == 3 and parts[0] and parts[1]:
            items.append({"stem": parts[0], "answer": parts[1],
                          "distractors": [d.strip() for d in parts[2].split(",") if d.strip()]})
    return items


def check_llm_item(item: dict, text: str, n_distractors: int = 3) -> list[str]:
    """The problems of an LLM-written item (empty list: it passes). The key is checked against the
    source: putting it in the blank must restore a passage of ``text`` word for word."""
    stem, answer, distr = item["stem"], item["answer"], item["distractors"]
    source = " " + " ".join(tokenize_en(text)) + " "

    def restores(word: str) -> bool:
        left, right = _BLANK.split(stem)
        return " " + " ".join(tokenize_en(f"{left} {word} {right}")) + " " in source

    if len(_BLANK.findall(stem)) != 1:
        return [f"the stem has {len(_BLANK.findall(stem))} blanks, not one"]
    problems = [] if restores(answer) else [f"the key '{answer}' does not restore the text"]
    lowered = [d.lower() for d in distr]
    if len(set(lowered)) != n_distractors:
        problems.append(f"{len(set(lowered))} distinct distractors, not {n_distractors}")
    if answer.lower() in lowered:
        problems.append("the key is also among the distractors")
    problems += [f"distractor '{d}' also restores the text (ambiguous)" for d in distr
                 if d.lower() != answer.lower() and restores(d)]
    return problems
