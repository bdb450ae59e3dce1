"""Marketing and advertising: ad creatives, product copy, filters and an A/B test (chapter 6.1).

The workflow of chapter 6.1, step by step:

1. a brief (:class:`AdBrief`): which product (a Fashion-MNIST class), tone and length of the copy;
2. candidates: product images from the class-conditional DDPM ``fashion_diffusion`` (DDIM with
   classifier-free guidance, :func:`generate_creatives`) and copies from the conditional GPT
   ``copy_gpt`` (grammar, checks and recipe in :mod:`aigc_course.recipes.copy_gpt`);
3. automatic filters (:func:`filter_creatives`): the classifier ``fashion_cnn`` rejects images it
   assigns to another class (off-target) or to the brief's class with low confidence, and
   near-duplicates (cosine distance of its features below a threshold); :func:`copy_problems`
   rejects copies with banned words or that miss the brief;
4. the human decision point: a person looks at the survivors with their scores;
5. an A/B test among the survivors on a *simulated* audience (:func:`simulated_click_rates`):
   uniform allocation against Thompson sampling (Thompson, 1933; Beta-Bernoulli, as in Chapelle &
   Li, 2011), measured by the regret :func:`bandit_regret`; :func:`uniform_regret` is its closed form
   for uniform allocation.

:func:`real_campaign` does steps 2-3 with Stable Diffusion and an instruction-tuned LLM
(:mod:`aigc_course.apps.hub`); tests run it on tiny random models of the same classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from aigc_course.data import FASHION_CLASSES
from aigc_course.recipes.copy_gpt import BANNED_WORDS, NOUNS, CopyBrief, copy_checks
from aigc_course.recipes.fashion_diffusion import sample_products


# ---------------------------------------------------------------- 1. the brief
@dataclass(frozen=True)
class AdBrief:
    """What the campaign asks for: a product class, the copy's tone and length, how many variants."""
    product: str
    tone: str = "playful"
    length: str = "short"
    n_variants: int = 32

    def __post_init__(self):
        CopyBrief(self.product, self.tone, self.length)  # raises a clear error on an unknown value
        if self.n_variants < 1:
            raise ValueError(f"n_variants must be at least 1, got {self.n_variants}.")

    @property
    def label(self) -> int:
        return FASHION_CLASSES.index(self.product)

    @property
    def copy_brief(self) -> CopyBrief:
        return CopyBrief(self.product, self.tone, self.length)


# ---------------------------------------------------------------- 2. candidates
def generate_creatives(model, schedule, brief: AdBrief, guidance: float = 2.0, num_steps: int = 20,
                       seed: int = 0) -> torch.Tensor:
    """``brief.n_variants`` product images (N, 1, 28, 28) in [-1, 1], each from its own noise."""
    labels = torch.full((brief.n_variants,), brief.label, dtype=torch.long)
    return sample_products(model, schedule, labels, guidance, num_steps, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- 3. automatic filters
@dataclass
class Scores:
    """The classifier's view of N images: p(brief's class), predicted class, its probability, features."""
    p_target: torch.Tensor  # (N,)
    predicted: torch.Tensor  # (N,)
    p_predicted: torch.Tensor  # (N,)
    features: torch.Tensor  # (N, D), unit length


@torch.no_grad()
def score_images(classifier, images: torch.Tensor, target: int) -> Scores:
    """Score images (N, 1, 28, 28) in [-1, 1] against the brief's class ``target``."""
    if images.dim() != 4 or images.shape[1:] != (1, 28, 28):
        raise ValueError(f"score_images expects images (N, 1, 28, 28), got {tuple(images.shape)}.")
    classifier.eval()
    device = next(classifier.parameters()).device
    feats = classifier.features(images.to(device))  # (N, D)
    probs = F.softmax(classifier.head(feats), dim=-1).cpu()  # (N, 10)
    p_max, predicted = probs.max(dim=-1)
    return Scores(probs[:, target], predicted, p_max, F.normalize(feats.cpu(), dim=-1))


def cosine_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - cos(a_i, b_j) for unit rows: (N, D), (M, D) -> (N, M)."""
    return 1 - a @ b.T


def nearest_neighbour_distance(features: torch.Tensor) -> torch.Tensor:
    """Distance of each row to its nearest other row (N,): the scale a duplicate threshold is set on."""
    d = cosine_distances(features, features)
    d.fill_diagonal_(float("inf"))
    return d.min(dim=1).values


@dataclass
class FilterConfig:
    min_confidence: float = 0.7  # p(brief's class) below this: rejected
    duplicate_distance: float = 0.01  # cosine distance to a kept, more confident image below this: rejected
    banned_words: tuple[str, ...] = BANNED_WORDS


RULES = ("off_target", "low_confidence", "near_duplicate")


@dataclass
class FilterResult:
    keep: torch.Tensor  # (N,) bool
    reason: list[str | None]  # the first rule that rejected each image, None if kept
    flagged: dict[str, int]  # how many images each rule flags on its own
    rejected: dict[str, int]  # how many each rule rejects when applied in order

    def rates(self) -> dict[str, float]:
        n = len(self.reason)
        return {rule: self.rejected[rule] / n for rule in RULES}


def filter_creatives(scores: Scores, target: int, cfg: FilterConfig | None = None) -> FilterResult:
    """Apply the rules in order: off-target, low confidence, near-duplicate.

    Near-duplicates are found greedily: the images that passed the first two rules are visited from
    the most to the least confident, and one closer than ``duplicate_distance`` to an image already
    kept is rejected (so of two copies the more confident one survives)."""
    cfg = cfg or FilterConfig()
    n = len(scores.p_target)
    off = scores.predicted != target
    low = scores.p_target < cfg.min_confidence
    reason: list[str | None] = ["off_target" if off[i] else "low_confidence" if low[i] else None for i in range(n)]
    kept: list[int] = []
    dup_any = torch.zeros(n, dtype=torch.bool)
    d = cosine_distances(scores.features, scores.features)
    for i in scores.p_target.argsort(descending=True).tolist():
        dup_any[i] = bool(kept) and bool((d[i, kept] < cfg.duplicate_distance).any())
        if reason[i] is None:
            if dup_any[i]:
                reason[i] = "near_duplicate"
            else:
                kept.append(i)
    flagged = {"off_target": int(off.sum()), "low_confidence": int(low.sum()), "near_duplicate": int(dup_any.sum())}
    rejected = {rule: reason.count(rule) for rule in RULES}
    return FilterResult(torch.tensor([r is None for r in reason]), reason, flagged, rejected)


def copy_problems(brief: AdBrief, text: str | None, banned: tuple[str, ...] = BANNED_WORDS) -> list[str]:
    """Why a copy is rejected (empty if it passes): unfinished, banned word, category, tone, length."""
    c = copy_checks(brief.copy_brief, text, banned)
    if not c["finished"]:
        return ["unfinished"]
    return (["banned_word"] if c["banned"] else []) + [k for k in ("category", "tone", "length") if not c[k]]


# ---------------------------------------------------------------- 5. the A/B test
def simulated_click_rates(confidence, base: float = 0.05, spread: float = 0.01, noise: float = 0.005,
                          seed: int = 0) -> np.ndarray:
    """SIMULATED click-through rates, one per creative: p_k = base + spread z_k + noise e_k, where
    z_k is the classifier confidence standardised over the creatives and e_k ~ N(0, 1); clipped to
    [0.001, 0.999]. No real audience is involved: this only gives the arms different, unknown rates."""
    c = np.asarray(confidence, dtype=float)
    if c.ndim != 1 or len(c) < 2:
        raise ValueError("simulated_click_rates needs the confidences of at least two creatives (a 1-D array).")
    z = (c - c.mean()) / (c.std() + 1e-12)
    e = np.random.default_rng(seed).standard_normal(len(c))
    return np.clip(base + spread * z + noise * e, 0.001, 0.999)


def uniform_regret(p: np.ndarray, t) -> np.ndarray:
    """Expected cumulative regret of uniform allocation after t impressions: t (max_k p_k - mean_k p_k)."""
    p = np.asarray(p, dtype=float)
    return np.asarray(t, dtype=float) * (p.max() - p.mean())


POLICIES = ("uniform", "thompson", "explore_commit")


def bandit_regret(p: np.ndarray, horizon: int, policy: str, n_runs: int = 100, seed: int = 0,
                  explore_per_arm: int = 200) -> np.ndarray:
    """Cumulative (pseudo-)regret sum_s (p* - p_{a_s}) of ``policy`` on arms with click rates ``p``:
    (n_runs, horizon), every run with its own simulated clicks.

    * ``uniform``: each impression shows a creative drawn uniformly (the classic even split);
    * ``thompson``: draw theta_k ~ Beta(1 + clicks_k, 1 + misses_k) for every arm, show the argmax;
    * ``explore_commit``: ``explore_per_arm`` impressions per arm in turn, then the best observed one."""
    if policy not in POLICIES:
        raise ValueError(f"Unknown policy {policy!r}: use one of {POLICIES}.")
    p = np.asarray(p, dtype=float)
    K = len(p)
    rng = np.random.default_rng(seed)
    clicks, shows = np.zeros((n_runs, K)), np.zeros((n_runs, K))
    regret = np.empty((n_runs, horizon))
    rows = np.arange(n_runs)
    total = np.zeros(n_runs)
    for s in range(horizon):
        if policy == "uniform":
            arm = rng.integers(0, K, n_runs)
        elif policy == "thompson":
            arm = rng.beta(1 + clicks, 1 + shows - clicks).argmax(axis=1)  # (n_runs,)
        elif s < explore_per_arm * K:
            arm = np.full(n_runs, s % K)
        else:
            arm = (clicks / np.maximum(shows, 1)).argmax(axis=1)
        reward = rng.random(n_runs) < p[arm]
        shows[rows, arm] += 1
        clicks[rows, arm] += reward
        total += p.max() - p[arm]
        regret[:, s] = total
    return regret


def peeking_false_positive_rate(p: float, n_per_arm: int, n_looks: int, n_runs: int = 2000, z_crit: float = 1.96,
                                seed: int = 0) -> float:
    """Share of A/A tests (both arms click with rate ``p``: there is nothing to find) declared
    significant by a two-proportion z-test that is checked ``n_looks`` times, at equal steps up to
    ``n_per_arm`` impressions per arm, and stopped at the first |z| > ``z_crit``. One look gives
    about 5%; every extra look is another chance of a false winner (Johari et al., 2017)."""
    if not 0 < p < 1 or n_looks < 1 or n_per_arm < n_looks:
        raise ValueError("Need 0 < p < 1, n_looks >= 1 and n_per_arm >= n_looks.")
    rng = np.random.default_rng(seed)
    looks = np.linspace(n_per_arm / n_looks, n_per_arm, n_looks).astype(int)
    clicks = rng.random((2, n_runs, n_per_arm)) < p  # (arm, run, impression)
    cum = clicks.cumsum(axis=2)[:, :, looks - 1]  # (2, n_runs, n_looks): clicks so far at each look
    rate_a, rate_b = cum / looks
    pooled = (rate_a + rate_b) / 2
    se = np.sqrt(2 * pooled * (1 - pooled) / looks) + 1e-12
    significant = np.abs(rate_a - rate_b) / se > z_crit  # (n_runs, n_looks)
    return float(significant.any(axis=1).mean())


# ---------------------------------------------------------------- 6. the real thing
def image_prompt(brief: AdBrief) -> str:
    noun = NOUNS[brief.product][0]
    return f"studio product photo of a single {noun}, plain white background, soft light, advertising"


def copy_messages(brief: AdBrief, banned: tuple[str, ...] = BANNED_WORDS) -> list[dict]:
    """The chat for an instruction-tuned LLM: brand rules as the system turn, the brief as the user turn."""
    sentences = "one sentence" if brief.length == "short" else "three sentences"
    system = ("You write product copy for a clothing shop. Rules: no claims about health or durability, "
              f"no superlatives, never use these words: {', '.join(banned)}.")
    user = (f"Write {sentences} of {brief.tone} ad copy for our {NOUNS[brief.product][0]} "
            f"(category: {brief.product}). Reply with the copy only.")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def real_campaign(brief: AdBrief, pipe, lm, tokenizer, n_images: int = 4, n_copies: int = 4, num_steps: int = 30,
                  guidance: float = 7.5, device="cuda", seed: int = 0, image_size: int | None = None) -> dict:
    """Images from a Stable Diffusion pipeline and copies from an instruction-tuned LLM, with the copy
    checks of this chapter. Returns {"prompt", "images" (N, 3, H, W) in [0, 1], "copies", "problems"}."""
    from aigc_course.apps.hub import chat

    prompt = image_prompt(brief)
    size = {} if image_size is None else {"height": image_size, "width": image_size}
    images = pipe(prompt, num_inference_steps=num_steps, guidance_scale=guidance, num_images_per_prompt=n_images,
                  output_type="pt", generator=torch.Generator(device).manual_seed(seed), **size).images
    copies = chat(lm, tokenizer, copy_messages(brief), max_new_tokens=80, temperature=0.9,
                  num_return_sequences=n_copies, seed=seed)
    copies = [c.strip() for c in copies]
    return {"prompt": prompt, "images": images.float().cpu(), "copies": copies,
            "problems": [copy_problems(brief, c) for c in copies]}
