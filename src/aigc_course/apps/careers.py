"""Fault tolerance: use generated output as is, review it, or leave the task to people (chapter 6.6).

Taught in chapter 6.6 ("Fault tolerance: where generative AI fits, and careers"). A model is
useful for a task when the value of its right outputs outweighs the damage of its wrong ones,
counting what checking costs. The module does the three steps of the chapter:

1. **measure** a shipped model's error rate on its task, by a criterion stated in advance, with
   the course's own judges (no second copy of any of them): sentence BLEU of
   :mod:`aigc_course.metrics.text` for translation, the form checker of
   :mod:`aigc_course.text.poems` for Tang verse, :func:`~aigc_course.text.captions.parse_caption`
   for captions, the ``mnist_cnn`` reading of :mod:`aigc_course.studies.guidance` for
   text-to-image. :func:`error_rate` turns the per-output flags into a rate with a Wilson
   interval (Wilson, 1927).
2. **price** the three modes of deployment with :class:`CostModel` (per output, error rate e):

   * automate: EV = (1 - e) V - e C_err - c_gen
   * review:   EV = (1 - e) V + e r (V - C_fix) - e (1 - r) C_err - C_rev - c_gen
   * human:    EV = (1 - e_h) V - e_h C_err - C_human

   V: value of a right output; C_err: cost of an error that reaches the user; C_rev: cost of
   reviewing one output; r: share of the errors that review catches (its recall); C_fix: cost of
   redoing a caught error; C_human: cost of a person doing the task from scratch, with error rate
   e_h; c_gen: cost of generating one output.
3. **decide**: the lines cross at the break-even rates of :func:`break_even` (closed form),
   :func:`regions` gives the interval of e where each mode wins, :func:`decide` checks that the
   whole confidence interval of the measured rate falls in one region, and
   :func:`simulate_deployment` replays the measured error flags through a review that catches
   each error with probability r, to measure the value a deployment would have delivered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from aigc_course.metrics.image import features_and_logits
from aigc_course.metrics.text import sentence_bleu
from aigc_course.studies.guidance import prompted_samples
from aigc_course.text.captions import parse_caption
from aigc_course.text.poems import POEM_END, form_score, write_poems
from aigc_course.text.translation import translate

MODES = ("automate", "review", "human")  # ties go to the first: less human work


# ----------------------------------------------------------------------------- the cost model


@dataclass(frozen=True)
class CostModel:
    """Costs and value per output, in one currency unit (illustrative numbers are assumptions)."""

    value: float  # V: what a right output is worth
    cost_error: float  # C_err: the damage of an error that reaches the user
    cost_review: float  # C_rev: a person checking one output
    review_recall: float  # r: share of the errors the review catches
    cost_fix: float  # C_fix: redoing an output the review caught
    cost_human: float  # C_human: a person doing the task from scratch
    cost_generate: float = 0.0  # c_gen: running the model once
    human_error: float = 0.0  # e_h: error rate of the person doing it from scratch

    def __post_init__(self):
        for name in ("value", "cost_error", "cost_review", "cost_fix", "cost_human", "cost_generate"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {getattr(self, name)}.")
        for name in ("review_recall", "human_error"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability: it must be in [0, 1], got {getattr(self, name)}.")

    @property
    def slope_automate(self) -> float:
        """a = V + C_err: what each unit of error rate costs without review."""
        return self.value + self.cost_error

    @property
    def slope_review(self) -> float:
        """k = (1 - r)(V + C_err) + r C_fix: what it costs with review (missed errors, fixes)."""
        r = self.review_recall
        return (1 - r) * (self.value + self.cost_error) + r * self.cost_fix

    @property
    def value_human(self) -> float:
        """EV of a person doing the task: (1 - e_h) V - e_h C_err - C_human."""
        return (1 - self.human_error) * self.value - self.human_error * self.cost_error - self.cost_human


def _check_rate(e):
    arr = np.asarray(e, dtype=float)
    if np.any(~np.isfinite(arr)) or np.any(arr < 0) or np.any(arr > 1):
        raise ValueError("The error rate e must lie in [0, 1] (a share of outputs, not a percentage).")
    return arr


def expected_value(cost: CostModel, e, mode: str):
    """Expected value per output of ``mode`` at error rate ``e`` (a float or an array)."""
    arr = _check_rate(e)
    if mode == "automate":
        out = cost.value - cost.cost_generate - cost.slope_automate * arr
    elif mode == "review":
        out = cost.value - cost.cost_generate - cost.cost_review - cost.slope_review * arr
    elif mode == "human":
        out = np.full_like(arr, cost.value_human)
    else:
        raise ValueError(f"Unknown mode {mode!r}; use one of {MODES}.")
    return float(out) if out.ndim == 0 else out


def break_even(cost: CostModel) -> dict[str, float]:
    """The error rates where two modes give the same EV (closed form; ``inf`` if never).

    * automate = human:  e = (V - c_gen - EV_human) / (V + C_err)
    * automate = review: e = C_rev / (r (V + C_err - C_fix)): review pays once the errors it
      catches, e r, times what each catch saves, V + C_err - C_fix, exceed its cost C_rev;
    * review = human:    e = (V - c_gen - C_rev - EV_human) / ((1 - r)(V + C_err) + r C_fix).
    """
    a, k = cost.slope_automate, cost.slope_review
    start = cost.value - cost.cost_generate  # EV of automation at e = 0
    saving = a - k  # = r (V + C_err - C_fix)
    out = {
        "automate_vs_human": (start - cost.value_human) / a if a > 0 else math.inf,
        "automate_vs_review": cost.cost_review / saving if saving > 0 else math.inf,
        "review_vs_human": (start - cost.cost_review - cost.value_human) / k if k > 0 else math.inf,
    }
    return out


def best_mode(cost: CostModel, e) -> str:
    """The mode of highest expected value at error rate ``e`` (ties: the first of :data:`MODES`)."""
    values = [expected_value(cost, float(_check_rate(e)), m) for m in MODES]
    return MODES[int(np.argmax(values))]


def regions(cost: CostModel) -> list[tuple[str, float, float]]:
    """``[(mode, e_low, e_high), ...]``: the intervals of [0, 1] where each mode wins, in order.

    The EVs are straight lines in e, so the winner can change only at the crossings of
    :func:`break_even`; between two crossings one evaluation (at the midpoint) names the winner.
    """
    cuts = sorted({0.0, 1.0} | {x for x in break_even(cost).values() if 0.0 < x < 1.0})
    out: list[tuple[str, float, float]] = []
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        mode = best_mode(cost, (lo + hi) / 2)
        if out and out[-1][0] == mode:
            out[-1] = (mode, out[-1][1], hi)  # the same winner on both sides of a crossing of two others
        else:
            out.append((mode, lo, hi))
    return out


# ----------------------------------------------------------------------------- error rates


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k / n (z = 1.96: 95%).

    centre = (p + z^2 / 2n) / (1 + z^2 / n), half-width = z / (1 + z^2 / n) sqrt(p (1 - p) / n + z^2 / 4n^2).
    Unlike p +- z sqrt(p (1 - p) / n) it stays inside [0, 1] and is not empty at k = 0.
    """
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"Need n >= 1 trials and 0 <= k <= n successes, got k={k}, n={n}.")
    p = k / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class ErrorRate:
    """Errors k out of n outputs, judged by ``criterion``, with a 95% Wilson interval."""

    task: str
    criterion: str
    errors: int
    n: int
    low: float
    high: float

    @property
    def rate(self) -> float:
        return self.errors / self.n

    def __str__(self) -> str:
        return (f"{self.task}: {self.errors}/{self.n} = {self.rate:.4f} "
                f"(95% CI {self.low:.4f} to {self.high:.4f}); error = {self.criterion}")


def error_rate(flags, task: str, criterion: str) -> ErrorRate:
    """Summarise per-output error flags (booleans) as an :class:`ErrorRate`."""
    flags = [bool(f) for f in flags]
    if not flags:
        raise ValueError("No outputs were judged: pass at least one error flag.")
    k = sum(flags)
    return ErrorRate(task, criterion, k, len(flags), *wilson_interval(k, len(flags)))


@dataclass
class Judged:
    """What a model produced and how the task's judge scored it, output by output."""

    outputs: list
    errors: list[bool]
    scores: list[float] | None = None  # the judge's number behind each flag, where there is one


def translation_errors(model, pairs, src_vocab, tgt_vocab, threshold: float = 30.0) -> Judged:
    """Greedy translations of ``pairs`` (``.en``, ``.zh``); an error = sentence BLEU (sacrebleu's
    "zh" tokens, exp smoothing) against the one reference below ``threshold`` (chapter 5.4)."""
    if not pairs:
        raise ValueError("translation_errors needs at least one sentence pair.")
    hyps = translate(model, [p.en for p in pairs], src_vocab, tgt_vocab, beam_size=1)
    scores = [sentence_bleu(h, [p.zh], tokenize="zh").score for h, p in zip(hyps, pairs)]
    return Judged(hyps, [s < threshold for s in scores], scores)


def poem_form_errors(model, tok, n: int, temperature: float = 0.8, top_k: int | None = 20,
                     max_chars: int = 200, seed: int = 0) -> Judged:
    """``n`` free poems (chapter 5.3); an error = a poem that is not fully regular verse (some line
    is not a 5+5 or 7+7 couplet with its marks in place, or the lines differ in length)."""
    if n < 1:
        raise ValueError(f"n must be >= 1 poems, got {n}.")
    poems = write_poems(model, tok, n=n, temperature=temperature, top_k=top_k, max_chars=max_chars, seed=seed)
    return Judged(poems, [form_score(p + POEM_END)["regular_poems"] < 1.0 for p in poems])


def caption_label_errors(model, vocab, images: torch.Tensor, labels: torch.Tensor) -> Judged:
    """Greedy captions of ``images`` (chapter 5.12); an error = the caption does not name the true
    digit (a wrong digit, none, or two)."""
    if len(images) != len(labels) or len(images) == 0:
        raise ValueError(f"Need as many labels as images (and at least one), got {len(labels)} and {len(images)}.")
    texts, _ = model.caption(images, vocab)
    return Judged(texts, [parse_caption(t)["label"] != int(y) for t, y in zip(texts, labels.tolist())])


def prompt_errors(pipe, classifier, per_digit: int, num_steps: int = 20, guidance_scale: float = 3.0,
                  template: str = "a handwritten {w}", seed: int = 0) -> tuple[Judged, torch.Tensor]:
    """``per_digit`` images for each digit's prompt (chapter 5.10); an error = the classifier reads
    another digit than the one asked for. Returns the judgement and the images (N, 1, 28, 28)."""
    images, labels, prompts = prompted_samples(pipe, template, per_digit, guidance_scale, num_steps, seed=seed)
    _, logits = features_and_logits(images, classifier)
    read = logits.argmax(1)
    return Judged(prompts, (read != labels).tolist(), read.tolist()), images


# ----------------------------------------------------------------------------- the decision


@dataclass
class Decision:
    """The mode that wins at the measured rate and at both ends of its confidence interval."""

    task: str
    mode: str
    mode_low: str
    mode_high: str
    values: dict[str, float]  # EV per output of each mode at the measured rate

    @property
    def robust(self) -> bool:
        """True when the whole interval lies in one region: more data would not change the choice."""
        return self.mode == self.mode_low == self.mode_high


def decide(cost: CostModel, rate: ErrorRate) -> Decision:
    """Pick the mode of highest EV at ``rate`` and check it at the interval's ends."""
    return Decision(rate.task, best_mode(cost, rate.rate), best_mode(cost, rate.low), best_mode(cost, rate.high),
                    {m: expected_value(cost, rate.rate, m) for m in MODES})


def simulate_deployment(errors, cost: CostModel, mode: str, seed: int = 0) -> float:
    """Mean value per output delivered by ``mode`` on the measured outputs ``errors`` (flags).

    Each wrong output is caught by the review with probability r (drawn with ``seed``); a caught
    one is redone at C_fix and then worth V, a missed one costs C_err. For "human" each output is
    redone by a person, wrong with probability e_h. Its expectation is :func:`expected_value` at the
    flags' mean, which the chapter checks.
    """
    err = np.asarray([bool(x) for x in errors])
    if err.size == 0:
        raise ValueError("simulate_deployment needs at least one judged output.")
    rng = np.random.default_rng(seed)
    V = cost.value
    if mode == "automate":
        per_output = np.where(err, -cost.cost_error, V) - cost.cost_generate
    elif mode == "review":
        caught = rng.random(err.size) < cost.review_recall
        per_output = np.where(err, np.where(caught, V - cost.cost_fix, -cost.cost_error), V)
        per_output = per_output - cost.cost_review - cost.cost_generate
    elif mode == "human":
        wrong = rng.random(err.size) < cost.human_error
        per_output = np.where(wrong, -cost.cost_error, V) - cost.cost_human
    else:
        raise ValueError(f"Unknown mode {mode!r}; use one of {MODES}.")
    return float(per_output.mean())
