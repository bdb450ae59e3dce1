"""A tiny generative baseline: a class-conditional Gaussian (mixture) over pixels.

Taught in part 1 ("What AIGC is") to contrast a *generative* model, which maps a label plus
random noise to an image, with a *discriminative* classifier, which maps an image to a label.

For each class y the model keeps K components with weights pi_{y,k}, mean images mu_{y,k} and
per-pixel standard deviations sigma_{y,k} (a diagonal covariance: pixels are independent given
the component):

    p(x | y) = sum_k pi_{y,k} prod_i N(x_i; mu_{y,k,i}, sigma_{y,k,i}^2)

Sampling: pick k ~ Categorical(pi_y), then x = mu_{y,k} + tau * sigma_{y,k} * eps with
eps ~ N(0, I) and a temperature tau. Fitting has a closed form for K = 1 (class mean and standard
deviation); for K > 1 the components come from k-means inside each class (hard-assignment EM,
Bishop 2006, "Pattern Recognition and Machine Learning", section 9.1-9.3).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from aigc_course.runtime import multinomial, randn


@dataclass
class PixelGaussianConfig:
    n_classes: int = 10
    n_components: int = 1  # K mixture components per class
    image_shape: tuple[int, int, int] = (1, 28, 28)
    min_std: float = 0.05  # floor on sigma so that constant pixels keep a finite density
    kmeans_iters: int = 15

    @classmethod
    def mnist(cls, n_components: int = 1) -> PixelGaussianConfig:
        return cls(n_components=n_components)


class PixelGaussian(nn.Module):
    """Class-conditional diagonal Gaussian mixture over images in [-1, 1].

    Buffers: ``mu`` and ``sigma`` (n_classes, K, C, H, W), ``log_pi`` (n_classes, K).
    """

    def __init__(self, cfg: PixelGaussianConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or PixelGaussianConfig()
        if cfg.n_classes < 1 or cfg.n_components < 1:
            raise ValueError("n_classes and n_components must be >= 1.")
        shape = (cfg.n_classes, cfg.n_components, *cfg.image_shape)
        self.register_buffer("mu", torch.zeros(shape))
        self.register_buffer("sigma", torch.ones(shape))
        self.register_buffer("log_pi", torch.full((cfg.n_classes, cfg.n_components), -math.log(cfg.n_components)))
        self.fitted = False

    def _check(self, x: torch.Tensor | None, y: torch.Tensor) -> None:
        if x is not None and tuple(x.shape[1:]) != tuple(self.cfg.image_shape):
            raise ValueError(f"Expected images of shape (N, {self.cfg.image_shape}), got {tuple(x.shape)}.")
        if y.dim() != 1 or (x is not None and len(y) != len(x)):
            raise ValueError("Labels must be a 1-D tensor with one label per image.")
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.cfg.n_classes):
            raise ValueError(f"Labels must lie in [0, {self.cfg.n_classes - 1}].")

    @torch.no_grad()
    def fit(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None) -> PixelGaussian:
        """Estimate the parameters from images x (N, C, H, W) and labels y (N,); returns self."""
        self._check(x, y)
        K = self.cfg.n_components
        for c in range(self.cfg.n_classes):
            xc = x[y == c].flatten(1).float()  # (Nc, D)
            if len(xc) < K:
                raise ValueError(f"Class {c} has {len(xc)} images, fewer than n_components={K}.")
            assign = self._kmeans(xc, K, generator) if K > 1 else torch.zeros(len(xc), dtype=torch.long)
            for k in range(K):
                xk = xc[assign == k]  # (Nk, D)
                self.mu[c, k] = xk.mean(0).view(self.cfg.image_shape)
                std = xk.std(0, unbiased=False) if len(xk) > 1 else torch.zeros_like(xk[0])
                self.sigma[c, k] = std.clamp_min(self.cfg.min_std).view(self.cfg.image_shape)
                self.log_pi[c, k] = math.log(max(len(xk), 1) / len(xc))
        self.fitted = True
        return self

    def _kmeans(self, xc: torch.Tensor, K: int, generator: torch.Generator | None) -> torch.Tensor:
        """Hard-assignment EM: assign each image to its nearest centre, move centres to the means."""
        centres = xc[torch.randperm(len(xc), generator=generator)[:K]].clone()  # (K, D)
        for _ in range(self.cfg.kmeans_iters):
            assign = torch.cdist(xc, centres).argmin(1)  # (Nc,)
            for k in range(K):
                members = xc[assign == k]
                if len(members):  # an empty cluster keeps its old centre
                    centres[k] = members.mean(0)
        return torch.cdist(xc, centres).argmin(1)

    @torch.no_grad()
    def sample(self, y: torch.Tensor, temperature: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw one image per label in y (N,); returns (N, C, H, W) clamped to [-1, 1]."""
        if not self.fitted:
            raise RuntimeError("Call fit(x, y) before sample().")
        self._check(None, y)
        y = y.to(self.mu.device)
        k = multinomial(self.log_pi[y].exp(), 1, generator).squeeze(1)  # (N,) component ids
        mu, sigma = self.mu[y, k], self.sigma[y, k]  # (N, C, H, W)
        eps = randn(mu.shape, generator, mu.device)  # drawn on the generator's device
        return (mu + temperature * sigma * eps).clamp(-1, 1)

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log p(x | y) in nats for each image, (N,); the density of the unclamped model."""
        if not self.fitted:
            raise RuntimeError("Call fit(x, y) before log_prob().")
        self._check(x, y)
        mu, sigma = self.mu[y], self.sigma[y]  # (N, K, C, H, W)
        z = (x.unsqueeze(1) - mu) / sigma
        log_n = (-0.5 * z**2 - sigma.log() - 0.5 * math.log(2 * math.pi)).flatten(2).sum(-1)  # (N, K)
        return torch.logsumexp(self.log_pi[y] + log_n, dim=1)

    def config_dict(self) -> dict:
        return asdict(self.cfg)


__all__ = ["PixelGaussian", "PixelGaussianConfig"]
