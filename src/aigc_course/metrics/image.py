"""Sample-quality metrics for image generators: FID, KID, IS, precision/recall, CLIP score.

Taught in chapter 5.13, "Evaluating image generators", where every image model of the course is
scored on the same number of samples.

All metrics except the CLIP score compare *features* of images, not pixels. The standard
feature network is Inception-v3 trained on ImageNet; the course uses its own MNIST classifier
``mnist_cnn`` instead (its 64-d penultimate layer, and its 10 logits for the Inception Score):
Inception cannot be downloaded here, and it was trained on natural photographs, so its features
say little about 28x28 digits. Numbers computed with ``mnist_cnn`` are comparable with each
other, never with FIDs printed in papers.

* :func:`fid` (Heusel et al., 2017): Frechet distance between Gaussians fitted to two feature sets,
  ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2}).
* :func:`kid` (Binkowski et al., 2018): unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3,
  averaged over random subsets; unbiased at any sample size, unlike FID.
* :func:`inception_score` (Salimans et al., 2016): exp E_x KL(p(y|x) || p(y)).
* :func:`precision_recall` (Kynkaanniemi et al., 2019): k-NN manifolds of real and fake features.
* :func:`clip_score` (Hessel et al., 2021): scaled cosine of paired image and text embeddings.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


def _net(net: nn.Module | None) -> nn.Module:
    if net is None:
        from aigc_course.pretrained import load_pretrained

        net, _ = load_pretrained("mnist_cnn")
    return net.eval()


@torch.no_grad()
def features_and_logits(images: torch.Tensor, net: nn.Module | None = None,
                        batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (N, 64) and class logits (N, 10) of images (N, 1, 28, 28) in [-1, 1], in one pass.

    ``net`` defaults to the course classifier ``mnist_cnn``; it must have ``.features(x)`` and
    ``.head`` (logits = head(features) in eval mode, where dropout is off).
    """
    if not torch.is_tensor(images) or images.dim() != 4:
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"images must be a tensor (N, C, H, W), got {shape}.")
    if images.shape[0] == 0:
        raise ValueError("images is empty: pass at least one image.")
    if images.min() >= 0 and images.max() <= 1 and images.max() > 0:
        raise ValueError("images look like they are in [0, 1]; the feature net expects [-1, 1]: "
                         "pass images * 2 - 1.")
    net = _net(net)
    device = next(net.parameters()).device
    feats, logits = [], []
    for chunk in images.split(batch_size):
        f = net.features(chunk.to(device, torch.float32))  # (b, 64)
        feats.append(f.cpu())
        logits.append(net.head(f).cpu())  # (b, 10)
    return torch.cat(feats), torch.cat(logits)


def features(images: torch.Tensor, net: nn.Module | None = None, batch_size: int = 500) -> torch.Tensor:
    """Penultimate features (N, 64) of the course classifier for images (N, 1, 28, 28) in [-1, 1]."""
    return features_and_logits(images, net, batch_size)[0]


def _check_feats(x: torch.Tensor, name: str, min_n: int = 2) -> torch.Tensor:
    if not torch.is_tensor(x) or x.dim() != 2:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"{name} must be a feature matrix (N, D), got {shape}; "
                         f"compute it with aigc_course.metrics.image.features(images).")
    if x.shape[0] < min_n:
        raise ValueError(f"{name} has {x.shape[0]} rows; this metric needs at least {min_n} samples "
                         f"(a covariance needs 2, and far more than the dimension to be reliable).")
    return x.detach().cpu().double()


def _same_dim(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"The two feature sets have dimensions {a.shape[1]} and {b.shape[1]}: "
                         f"compute both with the same network.")


def gaussian_stats(feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), in float64."""
    x = _check_feats(feats, "feats")
    mu = x.mean(0)
    xc = x - mu
    return mu, xc.T @ xc / (x.shape[0] - 1)


def _sqrt_psd(S: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a positive semi-definite matrix: V diag(sqrt(l)) V^T."""
    lam, V = torch.linalg.eigh((S + S.T) / 2)
    return (V * lam.clamp(min=0).sqrt()) @ V.T


def frechet_distance_gaussians(mu1, S1, mu2, S2) -> float:
    """Frechet (2-Wasserstein squared) distance between N(mu1, S1) and N(mu2, S2).

    d^2 = ||mu1 - mu2||^2 + tr S1 + tr S2 - 2 tr (S1 S2)^{1/2}. S1 S2 is not symmetric, but it
    has the same eigenvalues as the symmetric PSD matrix S1^{1/2} S2 S1^{1/2}, so
    tr (S1 S2)^{1/2} = sum_i sqrt(eig_i(S1^{1/2} S2 S1^{1/2})), computed stably with eigh.
    """
    mu1, mu2 = (torch.as_tensor(m, dtype=torch.float64) for m in (mu1, mu2))
    S1, S2 = (torch.as_tensor(s, dtype=torch.float64) for s in (S1, S2))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or S1.shape != (d, d) or S2.shape != (d, d):
        raise ValueError(f"Expected means (D,) and covariances (D, D) with one D; got {tuple(mu1.shape)}, "
                         f"{tuple(S1.shape)}, {tuple(mu2.shape)}, {tuple(S2.shape)}.")
    r1 = _sqrt_psd(S1)
    M = r1 @ S2 @ r1  # symmetric PSD, eigenvalues = those of S1 S2
    tr_sqrt = torch.linalg.eigvalsh((M + M.T) / 2).clamp(min=0).sqrt().sum()
    d2 = (mu1 - mu2).square().sum() + S1.trace() + S2.trace() - 2 * tr_sqrt
    return max(d2.item(), 0.0)


def fid(feats_a: torch.Tensor, feats_b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, D) and (M, D).

    Biased upwards at finite N (the estimated covariances are noisy): compare FIDs only at equal N.
    """
    a, b = _check_feats(feats_a, "feats_a"), _check_feats(feats_b, "feats_b")
    _same_dim(a, b)
    return frechet_distance_gaussians(*gaussian_stats(a), *gaussian_stats(b))


def _poly_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x @ y.T / x.shape[1] + 1) ** 3  # k(x, y) = (x.y / d + 1)^3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased MMD^2 (U-statistic) with the cubic polynomial kernel, samples (m, D) and (n, D).

    The diagonals k(x_i, x_i) are left out of the within-set means; that is what makes the
    expectation exactly MMD^2 (0 for equal distributions), so single values can be negative.
    """
    m, n = x.shape[0], y.shape[0]
    k_xx, k_yy, k_xy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    term_xx = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    term_yy = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return (term_xx + term_yy - 2 * k_xy.mean()).item()


def kid(feats_a: torch.Tensor, feats_b: torch.Tensor, subsets: int = 100, subset_size: int | None = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: (mean, std) of unbiased MMD^2 over random subsets.

    Each subset draws ``subset_size`` rows of each set without replacement (default: 1000, or
    the smaller set's size if that is less), as in Binkowski et al. (2018) and torch-fidelity.
    """
    a, b = _check_feats(feats_a, "feats_a"), _check_feats(feats_b, "feats_b")
    _same_dim(a, b)
    m = min(subset_size or 1000, a.shape[0], b.shape[0])
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}.")
    g = torch.Generator().manual_seed(seed)
    values = torch.tensor([mmd2_unbiased(a[torch.randperm(a.shape[0], generator=g)[:m]],
                                         b[torch.randperm(b.shape[0], generator=g)[:m]])
                           for _ in range(subsets)], dtype=torch.float64)
    return values.mean().item(), (values.std().item() if subsets > 1 else 0.0)


def inception_score(scores: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """Inception Score exp(E_x KL(p(y|x) || p(y))) from class logits or probabilities (N, K).

    Rows that are non-negative and sum to 1 are read as probabilities, anything else as logits.
    Following Salimans et al. (2016), the N samples are cut into ``splits`` parts, p(y) is the
    mean prediction within a part; returns (mean, std) over parts. Range: 1 (every image gets the
    same prediction) to K (confident predictions spread evenly over the K classes).
    """
    if not torch.is_tensor(scores) or scores.dim() != 2 or scores.shape[1] < 2:
        shape = tuple(scores.shape) if torch.is_tensor(scores) else type(scores).__name__
        raise ValueError(f"scores must be logits or probabilities (N, K) with K >= 2, got {shape}.")
    if not 1 <= splits <= scores.shape[0]:
        raise ValueError(f"splits must be in 1 .. N = {scores.shape[0]}, got {splits}.")
    s = scores.detach().cpu().double()
    is_probs = bool((s >= 0).all()) and torch.allclose(s.sum(1), torch.ones(len(s), dtype=s.dtype), atol=1e-4)
    log_p = torch.log(s.clamp(min=1e-30)) if is_probs else torch.log_softmax(s, dim=1)
    values = []
    for part in log_p.chunk(splits):
        log_py = torch.logsumexp(part, 0) - torch.log(torch.tensor(float(len(part)), dtype=s.dtype))
        kl = (part.exp() * (part - log_py)).sum(1)  # KL(p(y|x) || p(y)) per image
        values.append(kl.mean().exp())
    v = torch.stack(values)
    return v.mean().item(), (v.std().item() if splits > 1 else 0.0)


class PrecisionRecall(NamedTuple):
    precision: float
    recall: float


def knn_radius(x: torch.Tensor, k: int = 3, chunk: int = 1000) -> torch.Tensor:
    """Distance of every row of x (N, D) to its k-th nearest other row: (N,), the ball radii."""
    out = [torch.cdist(c, x).kthvalue(k + 1, dim=1).values for c in x.split(chunk)]  # +1: self at 0
    return torch.cat(out)


def _inside(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int) -> torch.Tensor:
    """Fraction of points lying in at least one ball B(centre_j, radius_j)."""
    hits = [(torch.cdist(c, centres) <= radii[None]).any(1) for c in points.split(chunk)]
    return torch.cat(hits).double().mean()


def precision_recall(real_feats: torch.Tensor, fake_feats: torch.Tensor, k: int = 3,
                     chunk: int = 1000) -> PrecisionRecall:
    """Improved precision and recall (Kynkaanniemi et al., 2019).

    The real manifold is the union of balls around each real feature with radius its distance
    to the k-th nearest real neighbour; precision = share of fakes inside it. Recall swaps the
    roles: the share of reals inside the fake manifold. Precision measures fidelity, recall
    coverage (a collapsed generator has high precision and low recall).
    """
    r, f = _check_feats(real_feats, "real_feats", k + 1), _check_feats(fake_feats, "fake_feats", k + 1)
    _same_dim(r, f)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    precision = _inside(f, r, knn_radius(r, k, chunk), chunk)
    recall = _inside(r, f, knn_radius(f, k, chunk), chunk)
    return PrecisionRecall(precision.item(), recall.item())


def classifier_accuracy(images: torch.Tensor, labels: torch.Tensor, net: nn.Module | None = None,
                        batch_size: int = 500) -> float:
    """Share of images (N, 1, 28, 28) that the classifier assigns to the intended class labels (N,)."""
    labels = torch.as_tensor(labels).long().cpu()
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}.")
    _, logits = features_and_logits(images, net, batch_size)
    return (logits.argmax(1) == labels).double().mean().item()


def clip_score(image_emb: torch.Tensor, text_emb: torch.Tensor, w: float = 100.0) -> float:
    """CLIP score of paired embeddings (N, D) and (N, D): w * mean_i max(cos(image_i, text_i), 0).

    The per-pair clamp at 0 is Hessel et al.'s CLIPScore (they use w = 2.5); the default w = 100
    is torchmetrics' scale (which clamps the mean instead; equal whenever no cosine is negative).
    Taking embeddings keeps this function independent of any particular CLIP model.
    """
    for name, e in (("image_emb", image_emb), ("text_emb", text_emb)):
        if not torch.is_tensor(e) or e.dim() != 2:
            raise ValueError(f"{name} must be a matrix of embeddings (N, D), got "
                             f"{tuple(e.shape) if torch.is_tensor(e) else type(e).__name__}.")
    if image_emb.shape != text_emb.shape:
        raise ValueError(f"image_emb {tuple(image_emb.shape)} and text_emb {tuple(text_emb.shape)} must be "
                         f"paired row by row (same N and D).")
    cos = torch.nn.functional.cosine_similarity(image_emb.double(), text_emb.double(), dim=1)
    return w * cos.clamp(min=0).mean().item()


@torch.no_grad()
def score_samples(fake: torch.Tensor, real_feats: torch.Tensor, net: nn.Module | None = None,
                  labels: torch.Tensor | None = None, k: int = 3, kid_subsets: int = 50,
                  is_splits: int = 10, seed: int = 0) -> dict[str, float]:
    """Every metric of this module for generated images ``fake`` against reference ``real_feats``.

    ``labels`` (N,): intended classes of a conditional generator, for ``classifier_accuracy``.
    Returns a dict with fid, kid, kid_std, is, precision, recall and, with labels, accuracy.
    """
    net = _net(net)
    f, logits = features_and_logits(fake, net)
    # subsets of half the samples, so that the std over subsets says something (at most 1000)
    m = max(2, min(1000, len(f) // 2, len(real_feats) // 2))
    kid_mean, kid_std = kid(real_feats, f, subsets=kid_subsets, subset_size=m, seed=seed)
    pr = precision_recall(real_feats, f, k=k)
    row = {"fid": fid(real_feats, f), "kid": kid_mean, "kid_std": kid_std,
           "is": inception_score(logits, splits=is_splits)[0],
           "precision": pr.precision, "recall": pr.recall}
    if labels is not None:
        labels = torch.as_tensor(labels).long()
        row["accuracy"] = (logits.argmax(1) == labels).double().mean().item()
    return row
