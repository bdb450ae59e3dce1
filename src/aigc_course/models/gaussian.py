"""The diagonal Gaussian latent shared by the course's VAEs (toy, text, convolutional, latent diffusion).

Taught in chapters 3.6 (the VAE) and 4.4 ("The ELBO, reparameterisation and the Gaussian KL"),
which checks :func:`gaussian_kl` against the general formula and a Monte Carlo estimate.

* :func:`reparameterize`: z = mu + sigma * eps, eps ~ N(0, I) (Kingma & Welling, 2014, section 2.4);
* :func:`gaussian_kl`: KL(N(mu, diag(sigma^2)) || N(0, I)) in closed form, per dimension;
* :func:`active_units`: how many latent dimensions carry information (Burda et al., 2016).
"""

from __future__ import annotations

import torch

from aigc_course.runtime import randn


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + exp(logvar / 2) * eps: the noise is an input, so gradients reach mu and logvar.
    ``eps`` defaults to fresh N(0, I) noise drawn from ``generator``."""
    if eps is None:
        eps = randn(mu.shape, generator, mu.device).to(mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per dimension, shape of ``mu``.

    Kingma & Welling (2014), appendix B: -KL = 1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2).
    """
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def active_units(mu: torch.Tensor, threshold: float = 0.01) -> tuple[int, torch.Tensor]:
    """Burda et al. (2016): dimension j is active when Cov_x(E_q(z|x)[z_j]) > ``threshold``.

    Args:
        mu: posterior means E_q[z] of many inputs, (N, latent_dim), N >= 2.

    Returns:
        ``(count, variances)``: the number of active dimensions and the variance of each (L,).
    """
    if mu.dim() != 2 or mu.shape[0] < 2:
        raise ValueError(f"mu must be (N, latent_dim) with N >= 2 inputs, got {tuple(mu.shape)}.")
    var = mu.float().var(dim=0, unbiased=False)  # (L,)
    return int((var > threshold).sum()), var
