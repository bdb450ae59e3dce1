"""Landmarks of generative AI: a small, cited table for the timeline and "why now" figures.

Taught in part 1 ("What AIGC is", "Why now", "Opportunities and challenges"). Every number
carries its source. ``train_flop`` is the total training compute in floating-point operations:

* ``flop_source="paper"``: the number printed in the original paper (GPT-3: 3.14e23 FLOP,
  Brown et al. 2020, Table D.1; Transformer big: 2.3e19 FLOP, Vaswani et al. 2017, Table 2;
  Llama 3.1 405B: 3.8e25 FLOP, Grattafiori et al. 2024, section 3.2.1).
* ``flop_source="6ND"``: our estimate from the parameter count N and the number of training
  tokens D that the paper reports, with the rule of thumb C ~ 6 N D (Kaplan et al. 2020, sec. 2.1:
  about 2 FLOP per parameter per token forward, 4 backward). For GPT-3 the rule gives
  6 x 175e9 x 300e9 = 3.15e23, next to the paper's 3.14e23.
* ``None``: not published (GPT-4, ChatGPT, GPT-2, DALL-E, ...). We do not copy third-party guesses
  into the table; the ``note`` says what is known. Epoch AI's "Notable AI Models" database and
  Sevilla et al. (2022), "Compute Trends Across Three Eras of Machine Learning", collect careful
  estimates for many more models.

Usage::

    from aigc_course.concepts.landmarks import landmarks, timeline_figure, compute_figure
    ax, fit = compute_figure()
    print(fit.doubling_months)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

KINDS = ("idea", "text", "image", "image-text", "representation")


@dataclass(frozen=True)
class Landmark:
    """One model or event. Numbers we are not sure are published are ``None``."""

    name: str
    year: int
    month: int  # month of the first public release (paper, preprint or product launch)
    organisation: str
    kind: str  # one of KINDS: what the model produces (or "idea" for a concept / test)
    params: float | None  # parameter count
    train_flop: float | None  # total training compute in FLOP
    flop_source: str | None  # "paper", "6ND" (our estimate C = 6 N D) or None
    reference: str
    note: str = ""

    @property
    def date(self) -> float:
        """Decimal year, mid-month (June 2017 -> 2017.46)."""
        return self.year + (self.month - 0.5) / 12


def _six_nd(params: float, tokens: float) -> float:
    """C ~ 6 N D (Kaplan et al. 2020): training FLOP from parameters N and tokens D."""
    return 6.0 * params * tokens


_LANDMARKS = [
    Landmark("Turing test", 1950, 10, "University of Manchester", "idea", None, None, None,
             "Turing (1950), Computing Machinery and Intelligence, Mind 59(236)",
             "The 'imitation game': can a machine's written answers pass for a human's?"),
    Landmark("ELIZA", 1966, 1, "MIT", "text", None, None, None,
             "Weizenbaum (1966), ELIZA, Communications of the ACM 9(1)",
             "Rule-based chatbot: keyword patterns and canned templates, no learning."),
    Landmark("LSTM", 1997, 11, "TU Munich / IDSIA", "representation", None, None, None,
             "Hochreiter & Schmidhuber (1997), Long Short-Term Memory, Neural Computation 9(8)",
             "Gated recurrent network that keeps information over long sequences."),
    Landmark("word2vec", 2013, 1, "Google", "representation", None, None, None,
             "Mikolov et al. (2013), Efficient Estimation of Word Representations in Vector Space, "
             "arXiv:1301.3781", "Words as dense vectors learned from co-occurrence."),
    Landmark("VAE", 2013, 12, "University of Amsterdam", "image", None, None, None,
             "Kingma & Welling (2013), Auto-Encoding Variational Bayes, arXiv:1312.6114 (ICLR 2014)",
             "Latent-variable generative model trained by maximising the ELBO."),
    Landmark("GAN", 2014, 6, "Université de Montréal", "image", None, None, None,
             "Goodfellow et al. (2014), Generative Adversarial Nets, NeurIPS",
             "A generator and a discriminator trained against each other."),
    Landmark("Transformer", 2017, 6, "Google", "text", 213e6, 2.3e19, "paper",
             "Vaswani et al. (2017), Attention Is All You Need, NeurIPS; params Table 3, FLOP Table 2",
             "'Big' EN-DE translation model."),
    Landmark("GPT-1", 2018, 6, "OpenAI", "text", 117e6, None, None,
             "Radford et al. (2018), Improving Language Understanding by Generative Pre-Training; "
             "size from Radford et al. (2019), Table 2", "Generative pre-training, then fine-tuning."),
    Landmark("BERT-Large", 2018, 10, "Google", "representation", 340e6, _six_nd(340e6, 1e6 * 256 * 512),
             "6ND", "Devlin et al. (2018), BERT, arXiv:1810.04805 (NAACL 2019), sections 3 and A.2",
             "Upper bound: 1M steps x 256 sequences x 512 tokens (90% of steps used 128 tokens)."),
    Landmark("GPT-2", 2019, 2, "OpenAI", "text", 1542e6, None, None,
             "Radford et al. (2019), Language Models are Unsupervised Multitask Learners, Table 2",
             "Training tokens and compute not published."),
    Landmark("GPT-3", 2020, 5, "OpenAI", "text", 175e9, 3.14e23, "paper",
             "Brown et al. (2020), Language Models are Few-Shot Learners, NeurIPS; Table D.1",
             "300B training tokens; 3.14e23 FLOP = 3,640 petaflop/s-days."),
    Landmark("DDPM", 2020, 6, "UC Berkeley", "image", 35.7e6, None, None,
             "Ho, Jain & Abbeel (2020), Denoising Diffusion Probabilistic Models, NeurIPS; App. B",
             "CIFAR-10 model size; compute reported only as TPU time."),
    Landmark("DALL-E", 2021, 1, "OpenAI", "image-text", 12e9, None, None,
             "Ramesh et al. (2021), Zero-Shot Text-to-Image Generation, ICML",
             "Autoregressive transformer over text and image tokens."),
    Landmark("CLIP", 2021, 1, "OpenAI", "image-text", None, None, None,
             "Radford et al. (2021), Learning Transferable Visual Models From Natural Language "
             "Supervision, ICML", "Contrastive image-text encoders on 400M pairs; used to steer image generators."),
    Landmark("Chinchilla", 2022, 3, "DeepMind", "text", 70e9, _six_nd(70e9, 1.4e12), "6ND",
             "Hoffmann et al. (2022), Training Compute-Optimal Large Language Models, NeurIPS",
             "1.4T training tokens: about 20 tokens per parameter."),
    Landmark("PaLM", 2022, 4, "Google", "text", 540e9, _six_nd(540e9, 780e9), "6ND",
             "Chowdhery et al. (2022), PaLM: Scaling Language Modeling with Pathways, arXiv:2204.02311",
             "780B training tokens."),
    Landmark("Stable Diffusion", 2022, 8, "CompVis / Stability AI / Runway", "image-text", 860e6, None, None,
             "Rombach et al. (2022), High-Resolution Image Synthesis with Latent Diffusion Models, CVPR; "
             "Stable Diffusion v1 model card", "U-Net size (plus a 123M CLIP text encoder); open weights."),
    Landmark("ChatGPT", 2022, 11, "OpenAI", "text", None, None, None,
             "OpenAI (2022), Introducing ChatGPT, blog post, 30 November 2022; "
             "method of Ouyang et al. (2022), InstructGPT", "Fine-tuned from a GPT-3.5 model with RLHF; size not published."),
    Landmark("LLaMA-65B", 2023, 2, "Meta", "text", 65.2e9, _six_nd(65.2e9, 1.4e12), "6ND",
             "Touvron et al. (2023), LLaMA: Open and Efficient Foundation Language Models, arXiv:2302.13971",
             "1.4T training tokens; open weights for research."),
    Landmark("GPT-4", 2023, 3, "OpenAI", "image-text", None, None, None,
             "OpenAI (2023), GPT-4 Technical Report, arXiv:2303.08774",
             "The report withholds architecture, size, compute and data; third-party estimates are unofficial."),
    Landmark("Llama 3.1 405B", 2024, 7, "Meta", "text", 405e9, 3.8e25, "paper",
             "Grattafiori et al. (2024), The Llama 3 Herd of Models, arXiv:2407.21783, section 3.2.1",
             "15.6T training tokens."),
]


def landmarks(kind: str | None = None, with_flop: bool = False) -> list[Landmark]:
    """The table sorted by date; optionally only one ``kind`` or only records with compute."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"Unknown kind {kind!r}. Known: {', '.join(KINDS)}.")
    rows = sorted(_LANDMARKS, key=lambda r: (r.date, r.name))
    if kind is not None:
        rows = [r for r in rows if r.kind == kind]
    if with_flop:
        rows = [r for r in rows if r.train_flop is not None]
    return rows


@dataclass(frozen=True)
class DoublingFit:
    """log2(C) = slope * year + intercept, fitted by least squares."""

    slope: float  # doublings per year
    intercept: float
    n: int  # number of points

    @property
    def doubling_months(self) -> float:
        return 12.0 / self.slope if self.slope != 0 else math.inf

    def predict(self, year) -> np.ndarray:
        return 2.0 ** (self.slope * np.asarray(year, dtype=float) + self.intercept)


def fit_doubling_time(years, values) -> DoublingFit:
    """Fit exponential growth: least squares of log2(values) on years; needs >= 2 points, values > 0."""
    x = np.asarray(years, dtype=float)
    y = np.asarray(values, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise ValueError(f"Need two 1-D arrays of equal length >= 2, got {x.shape} and {y.shape}.")
    if np.any(y <= 0):
        raise ValueError("Values must be positive to take a logarithm.")
    if np.ptp(x) == 0:
        raise ValueError("Years must not all be equal.")
    slope, intercept = np.polyfit(x, np.log2(y), 1)
    return DoublingFit(float(slope), float(intercept), len(x))


_KIND_COLOR = {"idea": "#6b6b6b", "text": "#3b6ea8", "image": "#e07b39", "image-text": "#3a9a5b",
               "representation": "#7d5ba6"}


def timeline_figure(ax=None, rows: list[Landmark] | None = None):
    """Landmarks on a time axis (1950 to today), one row each, coloured by kind; returns the axes.

    The time axis is broken into two linear pieces (1945-2011 compressed to a quarter of its
    width) because two thirds of the landmarks fall after 2012.
    """
    rows = landmarks() if rows is None else rows
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 0.28 * len(rows) + 1.2))
    split, squeeze = 2011.0, 0.25

    def pos(t: float) -> float:
        return t if t >= split else split - (split - t) * squeeze

    for i, r in enumerate(rows):
        x, y, c = pos(r.date), -i, _KIND_COLOR[r.kind]
        ax.plot([pos(1945), x], [y, y], color=c, lw=0.6, alpha=0.4)
        ax.plot(x, y, "o", color=c, ms=6)
        ax.text(x + 0.35, y, f"{r.name} ({r.year}, {r.organisation})", va="center", fontsize=8, color=c)
    ticks = [1950, 1970, 1990, 2010, 2014, 2018, 2022, 2026]
    ax.set_xticks([pos(t) for t in ticks], [str(t) for t in ticks])
    ax.axvline(split, color="grey", ls=":", lw=1)
    ax.set_xlim(pos(1945), pos(2034))
    ax.set_ylim(-len(rows), 1)
    ax.set_yticks([])
    ax.grid(False)
    for spine in ("left", "top", "right"):
        ax.spines[spine].set_visible(False)
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=k) for k, c in _KIND_COLOR.items()]
    ax.legend(handles=handles, loc="lower left", fontsize=8, title="what it generates / is")
    ax.set_title("Landmarks of generative AI (time axis compressed before 2011)")
    return ax


def compute_figure(ax=None, rows: list[Landmark] | None = None, threshold: float | None = None):
    """Training compute (log scale) against year, with a fitted exponential trend.

    Returns ``(ax, fit)`` where ``fit`` is the :class:`DoublingFit` of the plotted points;
    ``threshold`` draws a horizontal line (e.g. 1e25 FLOP, the EU AI Act's systemic-risk mark).
    """
    rows = landmarks(with_flop=True) if rows is None else [r for r in rows if r.train_flop]
    fit = fit_doubling_time([r.date for r in rows], [r.train_flop for r in rows])
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    for source, marker in (("paper", "o"), ("6ND", "s")):
        pts = [r for r in rows if r.flop_source == source]
        label = "reported in the paper" if source == "paper" else "our estimate, C = 6ND"
        ax.scatter([r.date for r in pts], [r.train_flop for r in pts], marker=marker, s=40, label=label,
                   zorder=3)
    for r in rows:
        ax.annotate(r.name, (r.date, r.train_flop), textcoords="offset points", xytext=(5, -10), fontsize=8)
    t = np.linspace(min(r.date for r in rows) - 0.5, max(r.date for r in rows) + 0.5, 50)
    ax.plot(t, fit.predict(t), "--", color="grey",
            label=f"fit: doubling every {fit.doubling_months:.1f} months")
    if threshold is not None:
        ax.axhline(threshold, color="#c0392b", lw=1, ls=":", label=f"{threshold:.0e} FLOP".replace("e+", "e"))
    ax.set_yscale("log")
    ax.set_xlabel("year")
    ax.set_ylabel("training compute (FLOP)")
    ax.set_title("Training compute of landmark language models")
    ax.legend(loc="upper left", fontsize=8)
    return ax, fit


__all__ = ["KINDS", "DoublingFit", "Landmark", "compute_figure", "fit_doubling_time", "landmarks",
           "timeline_figure"]
