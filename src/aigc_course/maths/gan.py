"""GAN theory on a 1D grid: the value function, the optimal discriminator and the JS divergence.

Taught in part 4, "GAN theory: minimax, the optimal discriminator and the JS divergence"
(notebook 4.3). Goodfellow et al. (2014), section 4:

* V(G, D) = E_{x ~ p_data} log D(x) + E_{x ~ p_g} log(1 - D(x))             (eq. 1)
* for a fixed G the best discriminator is D*(x) = p_data(x) / (p_data(x) + p_g(x))   (prop. 1)
* and then V(G, D*) = -log 4 + 2 JS(p_data || p_g)                             (theorem 1)

Densities are tensors of values on an evenly spaced grid ``x``; integrals are trapezoid sums, so
every identity can be checked numerically. :func:`fit_discriminator_1d` trains a small network on
samples and lets us watch it approach D*.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aigc_course.models.gan import d_loss_from_logits
from aigc_course.train import random_batches

_TINY = 1e-300  # densities below this count as 0 (0 log 0 = 0)


def _check_grid(x: torch.Tensor, *densities: torch.Tensor) -> None:
    if not torch.is_tensor(x) or x.dim() != 1 or len(x) < 2:
        raise ValueError("x must be a 1D grid tensor with at least 2 points, e.g. torch.linspace(-6, 6, 2001).")
    if not bool((x[1:] > x[:-1]).all()):
        raise ValueError("x must be increasing.")
    for p in densities:
        if not torch.is_tensor(p) or p.shape != x.shape:
            shape = tuple(p.shape) if torch.is_tensor(p) else type(p).__name__
            raise ValueError(f"Each density must be a tensor of the grid's shape {tuple(x.shape)}, got {shape}.")
        if bool((p < 0).any()):
            raise ValueError("Densities must be non-negative.")


def integrate(f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Trapezoid rule: the integral of f (values on the grid x) over the grid."""
    _check_grid(x)
    return torch.trapezoid(f, x)


def gaussian_pdf(x: torch.Tensor, mu: float, sigma: float) -> torch.Tensor:
    """N(x; mu, sigma^2) evaluated on x."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}.")
    return torch.exp(-0.5 * ((x - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))


def mixture_pdf(x: torch.Tensor, mus, sigmas, weights=None) -> torch.Tensor:
    """Density of a mixture of 1D Gaussians (weights default to equal)."""
    weights = [1.0 / len(mus)] * len(mus) if weights is None else weights
    if not (len(mus) == len(sigmas) == len(weights)) or abs(sum(weights) - 1) > 1e-6:
        raise ValueError("mus, sigmas and weights need the same length and the weights must sum to 1.")
    return sum(w * gaussian_pdf(x, m, s) for m, s, w in zip(mus, sigmas, weights))


def optimal_discriminator(p_data: torch.Tensor, p_g: torch.Tensor) -> torch.Tensor:
    """D*(x) = p_data(x) / (p_data(x) + p_g(x)); 1/2 where both densities vanish."""
    if p_data.shape != p_g.shape:
        raise ValueError(f"p_data and p_g must have the same shape, got {tuple(p_data.shape)} and {tuple(p_g.shape)}.")
    total = p_data + p_g
    return torch.where(total > _TINY, p_data / total.clamp_min(_TINY), torch.full_like(total, 0.5))


def value_function(d: torch.Tensor, p_data: torch.Tensor, p_g: torch.Tensor, x: torch.Tensor) -> float:
    """V(G, D) = integral of p_data log D + p_g log(1 - D), for D given by its values d on x."""
    _check_grid(x, p_data, p_g)
    if d.shape != x.shape or bool((d < 0).any() or (d > 1).any()):
        raise ValueError("d must hold values of D(x) in [0, 1] on the grid x.")
    # terms with zero density contribute 0 even where log D = -inf
    f = torch.where(p_data > 0, p_data * torch.log(d.clamp_min(_TINY)), torch.zeros_like(d))
    f = f + torch.where(p_g > 0, p_g * torch.log((1 - d).clamp_min(_TINY)), torch.zeros_like(d))
    return float(integrate(f, x))


def kl_divergence(p: torch.Tensor, q: torch.Tensor, x: torch.Tensor) -> float:
    """KL(p || q) = integral of p log(p / q), in nats (inf if p > 0 where q = 0)."""
    _check_grid(x, p, q)
    if bool(((p > _TINY) & (q <= _TINY)).any()):
        return math.inf
    ratio = p.clamp_min(_TINY) / q.clamp_min(_TINY)
    f = torch.where(p > _TINY, p * torch.log(ratio), torch.zeros_like(p))
    return float(integrate(f, x))


def js_divergence(p: torch.Tensor, q: torch.Tensor, x: torch.Tensor) -> float:
    """JS(p || q) = 1/2 KL(p || m) + 1/2 KL(q || m) with m = (p + q) / 2; between 0 and log 2."""
    _check_grid(x, p, q)
    m = 0.5 * (p + q)
    return 0.5 * kl_divergence(p, m, x) + 0.5 * kl_divergence(q, m, x)


def generator_gradients(d_fake: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradient of each generator loss with respect to D's logit l, as a function of D = sigmoid(l).

    minimax: d/dl log(1 - sigmoid(l)) = -D (vanishes as D -> 0, where a poor G starts);
    non-saturating: d/dl [-log sigmoid(l)] = -(1 - D) (close to -1 there).
    """
    if bool((d_fake <= 0).any() or (d_fake >= 1).any()):
        raise ValueError("d_fake must hold probabilities strictly between 0 and 1.")
    logit = torch.logit(d_fake.double()).requires_grad_()
    out = {}
    for name, loss in (("minimax", -F.softplus(logit)), ("non_saturating", F.softplus(-logit))):
        (grad,) = torch.autograd.grad(loss.sum(), logit)
        out[name] = grad
    return out


# A discriminator trained on samples approaches D* -----------------------------------------------


@dataclass
class Fit1DConfig:
    hidden: int = 64
    steps: int = 2000
    batch_size: int = 256
    lr: float = 3e-3
    seed: int = 0


def fit_discriminator_1d(x_data: torch.Tensor, x_g: torch.Tensor, config: Fit1DConfig | None = None):
    """Train an MLP D (1 -> 1 logit) by minimising -[log D(x_data) + log(1 - D(x_g))] on samples.

    ``x_data`` and ``x_g`` are (N,) sample tensors of the two distributions (G is frozen).
    Returns (discriminator, list of losses). Evaluate it with ``torch.sigmoid(D(x[:, None]))``.
    """
    c = config or Fit1DConfig()
    for name, s in (("x_data", x_data), ("x_g", x_g)):
        if not torch.is_tensor(s) or s.dim() != 1 or len(s) < 2:
            raise ValueError(f"{name} must be a 1D tensor of at least 2 samples, got "
                             f"{tuple(s.shape) if torch.is_tensor(s) else type(s).__name__}.")
    g = torch.Generator().manual_seed(c.seed)
    torch.manual_seed(c.seed)
    disc = nn.Sequential(nn.Linear(1, c.hidden), nn.Tanh(), nn.Linear(c.hidden, c.hidden), nn.Tanh(),
                         nn.Linear(c.hidden, 1))
    opt = torch.optim.Adam(disc.parameters(), lr=c.lr)
    losses = []
    real_batch = random_batches(x_data[:, None], batch_size=c.batch_size, generator=g)  # step -> (B, 1)
    fake_batch = random_batches(x_g[:, None], batch_size=c.batch_size, generator=g)
    for step in range(c.steps):
        real, fake = real_batch(step), fake_batch(step)
        loss = d_loss_from_logits(disc(real), disc(fake))  # -[log D(x) + log(1 - D(G(z)))]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    disc.eval()
    return disc, losses


__all__ = ["integrate", "gaussian_pdf", "mixture_pdf", "optimal_discriminator", "value_function",
           "kl_divergence", "js_divergence", "generator_gradients", "Fit1DConfig", "fit_discriminator_1d"]
