"""Exact quantities for checking the ELBO on a model whose evidence p(x) is known in closed form.

Taught in part 4, "The ELBO, reparameterisation and the Gaussian KL" (notebook 4.4).

The linear-Gaussian latent model (probabilistic PCA; Tipping & Bishop, 1999):

    z ~ N(0, I_L),   x | z ~ N(W z + b, sigma^2 I_D)
    =>  p(x) = N(x; b, W W^T + sigma^2 I_D)
        p(z|x) = N(Sigma_post W^T (x - b) / sigma^2, Sigma_post),  Sigma_post = (I + W^T W / sigma^2)^-1

For any Gaussian q(z) = N(m, S) the ELBO has a closed form (:meth:`LinearGaussian.elbo`), and the
identity ELBO(q) = log p(x) - KL(q || p(z|x)) can be checked to machine precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def _check_cov(S: torch.Tensor, name: str) -> None:
    if S.dim() != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"{name} must be a square covariance matrix, got shape {tuple(S.shape)}.")


def gaussian_kl_full(m_q: torch.Tensor, S_q: torch.Tensor, m_p: torch.Tensor, S_p: torch.Tensor) -> torch.Tensor:
    """KL(N(m_q, S_q) || N(m_p, S_p)) for full covariances (L, L):

    1/2 [ tr(S_p^-1 S_q) + (m_p - m_q)^T S_p^-1 (m_p - m_q) - L + log det S_p - log det S_q ].
    """
    _check_cov(S_q, "S_q")
    _check_cov(S_p, "S_p")
    L = m_q.shape[-1]
    if S_q.shape[0] != L or S_p.shape[0] != L or m_p.shape[-1] != L:
        raise ValueError(f"Dimensions differ: m_q has {L}, S_q {S_q.shape[0]}, m_p {m_p.shape[-1]}, S_p {S_p.shape[0]}.")
    S_p_inv = torch.linalg.inv(S_p)
    d = (m_p - m_q).unsqueeze(-1)  # (L, 1)
    trace = torch.trace(S_p_inv @ S_q)
    maha = (d.transpose(-1, -2) @ S_p_inv @ d).squeeze()
    return 0.5 * (trace + maha - L + torch.logdet(S_p) - torch.logdet(S_q))


def gaussian_log_density(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, cov) for one point x (D,) or a batch (N, D)."""
    _check_cov(cov, "cov")
    dist = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
    return dist.log_prob(x)


@dataclass
class LinearGaussian:
    """z ~ N(0, I_L), x | z ~ N(W z + b, sigma^2 I_D); W is (D, L), b is (D,)."""

    W: torch.Tensor
    b: torch.Tensor
    sigma: float

    def __post_init__(self):
        if self.W.dim() != 2 or self.b.shape != (self.W.shape[0],):
            raise ValueError(f"W must be (D, L) and b (D,), got {tuple(self.W.shape)} and {tuple(self.b.shape)}.")
        if self.sigma <= 0:
            raise ValueError(f"sigma must be positive, got {self.sigma}.")

    @property
    def D(self) -> int:
        return self.W.shape[0]

    @property
    def L(self) -> int:
        return self.W.shape[1]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, D) draws of x (ancestral sampling: z first, then x given z)."""
        z = torch.randn(n, self.L, generator=generator, dtype=self.W.dtype)
        return z @ self.W.T + self.b + self.sigma * torch.randn(n, self.D, generator=generator, dtype=self.W.dtype)

    def log_evidence(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) = log N(x; b, W W^T + sigma^2 I)."""
        cov = self.W @ self.W.T + self.sigma**2 * torch.eye(self.D, dtype=self.W.dtype)
        return gaussian_log_density(x, self.b, cov)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (L,) and covariance (L, L) of the exact posterior p(z|x) for one x (D,)."""
        S_post = torch.linalg.inv(torch.eye(self.L, dtype=self.W.dtype) + self.W.T @ self.W / self.sigma**2)
        return S_post @ self.W.T @ (x - self.b) / self.sigma**2, S_post

    def elbo(self, x: torch.Tensor, m: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
        """Closed-form ELBO for q(z) = N(m, S): E_q[log p(x|z)] - KL(q || N(0, I)).

        E_q[log p(x|z)] = -D/2 log(2 pi sigma^2) - (||x - W m - b||^2 + tr(W S W^T)) / (2 sigma^2).
        """
        _check_cov(S, "S")
        resid = x - self.W @ m - self.b
        expected_rec = -0.5 * self.D * math.log(2 * math.pi * self.sigma**2) - (
            resid @ resid + torch.trace(self.W @ S @ self.W.T)) / (2 * self.sigma**2)
        eye = torch.eye(self.L, dtype=self.W.dtype)
        return expected_rec - gaussian_kl_full(m, S, torch.zeros_like(m), eye)

    def elbo_mc(self, x: torch.Tensor, m: torch.Tensor, S: torch.Tensor, n: int = 10_000,
                generator: torch.Generator | None = None, return_stderr: bool = False):
        """Monte Carlo ELBO: mean over z ~ q of log p(x|z) + log p(z) - log q(z)
        (and its standard error with ``return_stderr``)."""
        chol = torch.linalg.cholesky(S)
        z = m + torch.randn(n, self.L, generator=generator, dtype=self.W.dtype) @ chol.T  # (n, L)
        eye_D = torch.eye(self.D, dtype=self.W.dtype)
        log_px_z = gaussian_log_density(x - z @ self.W.T - self.b, torch.zeros(self.D, dtype=self.W.dtype),
                                        self.sigma**2 * eye_D)
        log_pz = gaussian_log_density(z, torch.zeros(self.L, dtype=self.W.dtype), torch.eye(self.L, dtype=self.W.dtype))
        log_qz = gaussian_log_density(z, m, S)
        log_w = log_px_z + log_pz - log_qz  # (n,)
        if return_stderr:
            return log_w.mean(), log_w.std() / math.sqrt(n)
        return log_w.mean()
