"""Measuring classifier-free guidance and latent diffusion: quality, diversity and cost.

Taught in chapter 5.10 (text-to-image with classifier-free guidance) and reused in 5.11 (latent
diffusion). A text-to-image pipeline (``aigc_course.diffusion.pipeline.TextToImage``) is scored on
prompted digits by three judges that do not share its weights:

* **prompt accuracy**: the share of samples that the course classifier ``mnist_cnn`` reads as the
  prompted digit (does the image follow the text?);
* **diversity**: the mean pairwise distance between the classifier's 64-d features of samples
  made from the *same* prompt (do the samples of one prompt differ from each other?), next to the
  same number for real test digits;
* **CLIP score** (Hessel et al., 2021): 100 x the mean cosine between the mini-CLIP embeddings of
  each image and its prompt, from ``aigc_course.metrics.image.clip_score``;
* optionally **KID** (Binkowski et al., 2018) of the samples against real test features.

Classifier-free guidance (Ho & Salimans, 2022) trades the last two against the first: a larger
scale s in eps_u + s (eps_c - eps_u) makes samples match the prompt more often but look alike.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from aigc_course.metrics import image as image_metrics
from aigc_course.text.prompts import prompt


@dataclass
class SweepConfig:
    scales: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0)
    per_digit: int = 8  # samples per digit and scale (x10 digits)
    num_steps: int = 20  # DDIM steps
    template: str = "a handwritten {w}"
    seed: int = 0  # the same initial noise for every scale (common random numbers)
    batch_size: int = 100


@torch.no_grad()
def prompted_samples(pipe, template: str = "a handwritten {w}", per_digit: int = 8, guidance_scale: float = 3.0,
                     num_steps: int = 20, seed: int = 0, batch_size: int = 100):
    """Images (10 * per_digit, 1, 28, 28), their digit labels and prompts, digit-major.

    The noise depends only on ``seed`` and the batch layout, so two calls that differ only in the
    guidance scale start from the same noise and their samples can be compared one by one."""
    if per_digit < 1 or num_steps < 1:
        raise ValueError(f"per_digit and num_steps must be >= 1, got {per_digit} and {num_steps}.")
    labels = torch.arange(10).repeat_interleave(per_digit)  # (N,)
    prompts = [prompt(int(d), template) for d in labels]
    g = torch.Generator().manual_seed(seed)
    images = [pipe(prompts[i:i + batch_size], guidance_scale, num_steps, generator=g).cpu()
              for i in range(0, len(prompts), batch_size)]
    return torch.cat(images), labels, prompts


def within_prompt_diversity(feats: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean over labels of the mean pairwise Euclidean distance between the features (N, D) of
    the samples with that label: 0 when every sample of a prompt is the same image."""
    if feats.dim() != 2 or len(feats) != len(labels):
        raise ValueError(f"Expected features (N, D) and labels (N,), got {tuple(feats.shape)} and {tuple(labels.shape)}.")
    per_label = []
    for c in labels.unique():
        f = feats[labels == c].double()
        n = len(f)
        if n < 2:
            raise ValueError(f"Label {int(c)} has {n} sample; diversity needs at least 2 per label.")
        per_label.append(torch.cdist(f, f).sum() / (n * (n - 1)))  # the zero diagonal is left out
    return torch.stack(per_label).mean().item()


@torch.no_grad()
def clip_score_of(pipe, images: torch.Tensor, prompts: list[str]) -> float:
    """CLIP score (0..100) of images (N, 1, 28, 28) and their prompts, judged by the pipeline's mini-CLIP."""
    device = pipe.device
    image_emb = torch.cat([pipe.clip.encode_image(x.to(device)).cpu() for x in images.split(500)])
    return image_metrics.clip_score(image_emb, pipe.encode_text(prompts).cpu())


@torch.no_grad()
def score_prompted(pipe, images: torch.Tensor, labels: torch.Tensor, prompts: list[str], classifier=None,
                   real_feats: torch.Tensor | None = None) -> dict[str, float]:
    """Prompt accuracy, diversity, CLIP score (and KID against ``real_feats`` if given) of images."""
    feats, logits = image_metrics.features_and_logits(images, classifier)
    row = {"accuracy": (logits.argmax(1) == labels).double().mean().item(),
           "diversity": within_prompt_diversity(feats, labels),
           "clip_score": clip_score_of(pipe, images, prompts)}
    if real_feats is not None:
        m = max(2, min(len(feats), len(real_feats)) // 2)
        row["kid"] = image_metrics.kid(real_feats, feats, subsets=20, subset_size=m)[0]
    return row


def guidance_sweep(pipe, cfg: SweepConfig | None = None, classifier=None, real_feats: torch.Tensor | None = None,
                   progress: Callable[[str], None] | None = None) -> list[dict[str, float]]:
    """One row of :func:`score_prompted` per guidance scale of ``cfg.scales``, plus its sampling time."""
    cfg = cfg or SweepConfig()
    if any(s < 0 for s in cfg.scales):
        raise ValueError(f"Guidance scales must be >= 0, got {cfg.scales}.")
    rows = []
    for s in cfg.scales:
        t0 = time.perf_counter()
        images, labels, prompts = prompted_samples(pipe, cfg.template, cfg.per_digit, s, cfg.num_steps, cfg.seed,
                                                   cfg.batch_size)
        seconds = time.perf_counter() - t0
        rows.append({"scale": float(s), **score_prompted(pipe, images, labels, prompts, classifier, real_feats),
                     "seconds": seconds})
        if progress is not None:
            progress(f"s = {s:g}: " + ", ".join(f"{k} {v:.3f}" for k, v in rows[-1].items() if k != "scale"))
    return rows


def time_sampling(pipe, n: int = 64, num_steps: int = 50, guidance_scale: float = 3.0, threads: int | None = 2,
                  prompt_text: str = "a handwritten seven", seed: int = 0) -> dict[str, float]:
    """Time to generate ``n`` images in one batch (DDIM ``num_steps``, guided) with ``threads`` CPU
    threads (restored afterwards; None keeps the current setting).

    Returns {"wall": seconds on the clock, "cpu": CPU seconds of this process summed over its
    threads}. On an idle machine wall ~ cpu / threads; on a busy one the wall time is larger."""
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(seed)
        pipe([prompt_text], guidance_scale, 1, generator=g)  # warm-up: allocations, lazy inits
        wall0, cpu0 = time.perf_counter(), time.process_time()
        pipe([prompt_text] * n, guidance_scale, num_steps, generator=g)
        return {"wall": time.perf_counter() - wall0, "cpu": time.process_time() - cpu0}
    finally:
        torch.set_num_threads(old)


def time_call(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs, after ``warmup`` runs."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}.")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def slerp(z0: torch.Tensor, z1: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between two noise tensors of the same shape.

    Two Gaussian noises are nearly orthogonal with nearly equal norms; the straight line between
    them passes through tensors of smaller norm (at alpha = 1/2 about 1/sqrt 2 of it), which the
    denoiser never saw. slerp follows the great circle instead:
    z = sin((1 - a) theta) / sin(theta) z0 + sin(a theta) / sin(theta) z1, cos(theta) = <z0, z1> / (|z0| |z1|).
    """
    if z0.shape != z1.shape:
        raise ValueError(f"slerp needs two tensors of one shape, got {tuple(z0.shape)} and {tuple(z1.shape)}.")
    a = torch.as_tensor(alpha, dtype=z0.dtype)
    cos = (z0.flatten() @ z1.flatten()) / (z0.norm() * z1.norm())
    theta = torch.arccos(cos.clamp(-1.0, 1.0))
    if theta.abs() < 1e-4:  # (nearly) parallel: the straight line is the same path
        return (1 - a) * z0 + a * z1
    return (torch.sin((1 - a) * theta) * z0 + torch.sin(a * theta) * z1) / torch.sin(theta)


@torch.no_grad()
def similarity_matrix(clip, vocab, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
    """Cosine similarities (N_images, N_prompts) between mini-CLIP image and text embeddings."""
    from aigc_course.text.prompts import encode_prompts

    device = next(clip.parameters()).device
    text = clip.encode_text(encode_prompts(vocab, list(prompts)).to(device))  # (P, D), unit rows
    return (clip.encode_image(images.to(device)) @ text.T).cpu()  # (N, P)


def plot_sweep(rows: list[dict[str, float]], reference: dict[str, float] | None = None, axes=None,
               metrics: Sequence[str] = ("accuracy", "diversity", "clip_score")):
    """One panel per metric against the guidance scale; ``reference`` (e.g. real digits) dashed."""
    import matplotlib.pyplot as plt

    titles = {"accuracy": "prompt accuracy (mnist_cnn)", "diversity": "diversity (feature distance)",
              "clip_score": "CLIP score (mini-CLIP)", "kid": "KID vs real digits", "seconds": "seconds"}
    if axes is None:
        _, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.1))
    scales = [r["scale"] for r in rows]
    for ax, m in zip(axes, metrics):
        ax.plot(scales, [r[m] for r in rows], "o-")
        if reference is not None and m in reference:
            ax.axhline(reference[m], ls="--", color="gray", label="real test digits")
            ax.legend(fontsize=8)
        ax.set_xlabel("guidance scale s")
        if m == "accuracy":
            ax.set_ylim(0, 1.02)
        ax.set_title(titles.get(m, m))
    return axes


def guidance_panel(pipe, text: str, n: int = 8, num_steps: int = 20, seed: int = 0, nrow: int = 4) -> Callable:
    """A ``draw(ax, guidance_scale)`` for ``aigc_course.widgets.interactive_figure``: ``n`` samples of
    ``text`` from the same noise at the chosen scale (results are cached per scale)."""
    from aigc_course.plotting import show_images

    noise = torch.randn((n, *pipe.shape), generator=torch.Generator().manual_seed(seed))
    cache: dict[float, torch.Tensor] = {}

    def draw(ax, guidance_scale: float):
        s = float(guidance_scale)
        if s not in cache:
            cache[s] = pipe([text] * n, s, num_steps, x=noise.clone()).cpu()
        show_images(cache[s], nrow=nrow, ax=ax)

    return draw


def psnr(x: torch.Tensor, x_hat: torch.Tensor, peak_to_peak: float = 2.0) -> float:
    """Peak signal-to-noise ratio in dB, 10 log10(range^2 / MSE); range 2 for images in [-1, 1]."""
    if x.shape != x_hat.shape:
        raise ValueError(f"psnr needs two tensors of one shape, got {tuple(x.shape)} and {tuple(x_hat.shape)}.")
    mse = torch.mean((x.double() - x_hat.double()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(peak_to_peak ** 2 / mse)
