"""Sample-quality numbers for 2D generative models: two point clouds in, one number out.

Taught in part 2, "Generative model families side by side" (notebook 2.3), where the four model
families are compared on the same toy data:

* :func:`mmd_rbf`: maximum mean discrepancy with a Gaussian (RBF) kernel (Gretton et al. 2012);
  zero when the two samples are the same, larger the more the distributions differ.
* :func:`kde_nll`: negative log-likelihood of held-out data under a kernel density estimate fitted
  on the model's samples; it punishes missing modes (data where the model puts no samples).
* :func:`mode_stats`: for a mixture with known centres (eight Gaussians), how many modes receive
  samples and which fraction of samples lie within 3 standard deviations of a centre.
"""

from __future__ import annotations

import math

import torch


def _check(x: torch.Tensor, name: str) -> torch.Tensor:
    if not torch.is_tensor(x) or x.dim() != 2 or x.shape[0] == 0:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"{name} must be a non-empty tensor of shape (N, D), got {shape}.")
    return x.detach().double().cpu()


def mmd_rbf(x: torch.Tensor, y: torch.Tensor, bandwidths=(0.1, 0.2, 0.5, 1.0)) -> float:
    """Squared MMD between samples x (N, D) and y (M, D), summed over several RBF bandwidths.

    MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y) with k(a, b) = exp(-|a - b|^2 / (2 h^2)).
    This is the biased (V-statistic) estimate: exactly 0 for identical samples, never negative.
    Several bandwidths catch differences at several scales (a missing mode, a blurred one).
    """
    x, y = _check(x, "x"), _check(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {x.shape[1]} and {y.shape[1]}.")
    if not bandwidths or any(h <= 0 for h in bandwidths):
        raise ValueError(f"bandwidths must be positive, got {bandwidths}.")
    d_xx, d_yy, d_xy = torch.cdist(x, x) ** 2, torch.cdist(y, y) ** 2, torch.cdist(x, y) ** 2
    total = 0.0
    for h in bandwidths:
        gamma = 1.0 / (2 * h * h)
        k_xx, k_yy, k_xy = (torch.exp(-gamma * d).mean() for d in (d_xx, d_yy, d_xy))
        total += (k_xx + k_yy - 2 * k_xy).item()
    return max(total, 0.0)


def kde_nll(samples: torch.Tensor, data: torch.Tensor, bandwidth: float = 0.1) -> float:
    """Mean -log p_KDE(x) over ``data`` (M, D), where p_KDE is a Gaussian KDE on ``samples`` (N, D).

    p_KDE(x) = 1/N sum_i N(x; s_i, h^2 I). Lower is better; data far from every sample (a mode the
    model dropped) costs a lot, so this number sees mode collapse that a precision score misses.
    """
    s, x = _check(samples, "samples"), _check(data, "data")
    if s.shape[1] != x.shape[1]:
        raise ValueError(f"samples and data must have the same dimension, got {s.shape[1]} and {x.shape[1]}.")
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be positive, got {bandwidth}.")
    dim = x.shape[1]
    log_k = -(torch.cdist(x, s) ** 2) / (2 * bandwidth**2) - dim * math.log(bandwidth * math.sqrt(2 * math.pi))
    log_p = torch.logsumexp(log_k, dim=1) - math.log(s.shape[0])  # (M,)
    return float(-log_p.mean())


def eight_gaussian_centres(radius: float = 2.0) -> torch.Tensor:
    """The 8 centres of ``toy_2d('eight_gaussians')``: radius 2, every 45 degrees. -> (8, 2)."""
    k = torch.arange(8, dtype=torch.float64)
    return radius * torch.stack([torch.cos(k * math.pi / 4), torch.sin(k * math.pi / 4)], 1)


def mode_stats(samples: torch.Tensor, centres: torch.Tensor, std: float = 0.15,
               min_frac: float = 0.01) -> dict[str, float]:
    """Mode coverage and precision of samples (N, D) for a mixture with known centres (K, D).

    A sample is "high quality" when it lies within 3 std of its nearest centre. A mode counts as
    covered when at least ``min_frac`` of all samples are high-quality samples of that mode.
    Returns {'modes': covered count, 'high_quality': fraction, 'per_mode': list of fractions}.
    """
    s, c = _check(samples, "samples"), _check(centres, "centres")
    if s.shape[1] != c.shape[1]:
        raise ValueError(f"samples and centres must have the same dimension, got {s.shape[1]} and {c.shape[1]}.")
    dist, nearest = torch.cdist(s, c).min(dim=1)  # (N,), (N,)
    good = dist < 3 * std
    per_mode = torch.bincount(nearest[good], minlength=c.shape[0]).double() / s.shape[0]
    return {"modes": int((per_mode >= min_frac).sum()), "high_quality": float(good.double().mean()),
            "per_mode": per_mode.tolist()}


__all__ = ["mmd_rbf", "kde_nll", "eight_gaussian_centres", "mode_stats"]
