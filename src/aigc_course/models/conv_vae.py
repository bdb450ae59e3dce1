"""A convolutional VAE for 28x28 binary images (Kingma & Welling, 2014).

Taught in part 3, "Variational autoencoders" (notebook 3.6), with its mathematics in part 4,
"The ELBO, reparameterisation and the Gaussian KL" (4.4), and trained on MNIST in part 5,
"A convolutional VAE on MNIST" (5.8).

The data are *dynamically binarised* MNIST: each time an image is used, every pixel is drawn as
x_i ~ Bernoulli(intensity_i) (:func:`binarize`). The decoder outputs one logit per pixel and
p(x|z) = prod_i Bernoulli(x_i; sigmoid(logit_i)), a proper probability mass function on
{0, 1}^784, so the negative ELBO

    -ELBO(x) = E_q(z|x)[-log p(x|z)] + KL(q(z|x) || p(z)),   p(z) = N(0, I),

is an upper bound on -log p(x) in nats per image (bits per dimension = nats / (784 ln 2)).
The ELBO is *maximised*; the training loss is its negative. The KL term pulls each posterior
q(z|x) towards the prior p(z). ``beta`` weights the KL term in the training loss (Higgins et
al., 2017); only beta = 1 gives the bound. :meth:`ConvVAE.iwae_nll` gives the tighter
importance-weighted bound of Burda et al. (2016).

1. encode: two stride-2 convolutions (28 -> 14 -> 7), then a linear map to (mu, logvar);
2. sample: z = mu + sigma * eps, eps ~ N(0, I) (the reparameterisation trick);
3. decode: a linear map to a 64x7x7 map, two stride-2 transposed convolutions (7 -> 14 -> 28);
4. loss: reconstruction = BCE-with-logits summed over pixels, plus beta * KL, per image.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aigc_course.models.gaussian import active_units, gaussian_kl, reparameterize
from aigc_course.runtime import bernoulli, randn

__all__ = ["ConvVAE", "ConvVAEConfig", "binarize", "active_units", "gaussian_kl"]


@dataclass
class ConvVAEConfig:
    latent_dim: int = 16
    beta: float = 1.0  # weight of the KL term in the training loss (1 = the ELBO)
    channels: int = 32  # channels of the first conv; the second has twice as many
    image_size: int = 28  # must be divisible by 4

    def __post_init__(self):
        if self.latent_dim < 1 or self.channels < 1:
            raise ValueError(f"latent_dim and channels must be >= 1, got {self.latent_dim}, {self.channels}.")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}.")
        if self.image_size % 4:
            raise ValueError(f"image_size must be divisible by 4 (two stride-2 convs), got {self.image_size}.")


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Dynamic binarisation: each pixel becomes 1 with probability equal to its intensity in [0, 1]."""
    if float(x.min()) < 0 or float(x.max()) > 1:
        raise ValueError("binarize expects intensities in [0, 1]: load with image_tensors(..., scale='[0, 1]').")
    return bernoulli(x, generator)  # drawn on the generator's device


class ConvVAE(nn.Module):
    """Binary images (B, 1, 28, 28) -> q(z|x) = N(mu, diag(exp(logvar))) -> pixel logits."""

    def __init__(self, config: ConvVAEConfig | None = None):
        super().__init__()
        self.config = c = config or ConvVAEConfig()
        C, s = c.channels, c.image_size // 4
        self.encoder = nn.Sequential(
            nn.Conv2d(1, C, 4, stride=2, padding=1), nn.SiLU(),  # (B, C, 14, 14)
            nn.Conv2d(C, 2 * C, 4, stride=2, padding=1), nn.SiLU(),  # (B, 2C, 7, 7)
            nn.Flatten(),  # (B, 2C * 49)
        )
        self.to_posterior = nn.Linear(2 * C * s * s, 2 * c.latent_dim)  # -> (mu, logvar)
        self.from_latent = nn.Linear(c.latent_dim, 2 * C * s * s)
        self.decoder = nn.Sequential(
            nn.SiLU(), nn.Unflatten(1, (2 * C, s, s)),  # (B, 2C, 7, 7)
            nn.ConvTranspose2d(2 * C, C, 4, stride=2, padding=1), nn.SiLU(),  # (B, C, 14, 14)
            nn.ConvTranspose2d(C, 1, 4, stride=2, padding=1),  # (B, 1, 28, 28) logits
        )

    @property
    def device(self) -> torch.device:
        return self.to_posterior.weight.device

    def _check_images(self, x: torch.Tensor) -> None:
        size = self.config.image_size
        if not torch.is_tensor(x) or x.dim() != 4 or tuple(x.shape[1:]) != (1, size, size):
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"x must be images of shape (B, 1, {size}, {size}), got {shape}.")
        if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
            raise ValueError("x must hold pixels in [0, 1] (binarised for a proper likelihood): load with "
                             "image_tensors(..., scale='[0, 1]') and apply binarize(x).")

    # 1. encode -----------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mu and logvar (B, L) of q(z|x)."""
        self._check_images(x)
        mu, logvar = self.to_posterior(self.encoder(x)).chunk(2, dim=-1)  # (B, 2L) -> 2 x (B, L)
        return mu, logvar

    # 2. sample z ---------------------------------------------------------------------------------
    reparameterize = staticmethod(reparameterize)  # z = mu + sigma * eps (models/gaussian.py)

    # 3. decode -----------------------------------------------------------------------------------
    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Pixel logits (B, 1, 28, 28) of p(x|z) for codes z (B, L)."""
        if z.dim() != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(f"z must be (B, {self.config.latent_dim}), got {tuple(z.shape)}.")
        return self.decoder(self.from_latent(z))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The mean image E[x|z] = sigmoid(logits), (B, 1, 28, 28) in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """(logits (B, 1, 28, 28), mu (B, L), logvar (B, L)) for one posterior sample per image."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar, generator=generator)
        return self.decode_logits(z), mu, logvar

    # 4. loss -------------------------------------------------------------------------------------
    def loss(self, x: torch.Tensor, beta: float | None = None,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per-image averages (nats): 'rec' = E_q[-log p(x|z)] (one sample), 'kl' = KL(q(z|x) || p(z)),
        'neg_elbo' = rec + kl, and the training objective 'loss' = rec + beta * kl."""
        beta = self.config.beta if beta is None else beta
        logits, mu, logvar = self(x, generator=generator)
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)  # (B,)
        kl = gaussian_kl(mu, logvar).sum(1)  # (B,), closed form
        rec, kl = rec.mean(), kl.mean()
        return {"loss": rec + beta * kl, "rec": rec, "kl": kl, "neg_elbo": rec + kl}

    @torch.no_grad()
    def iwae_nll(self, x: torch.Tensor, k: int = 64, generator: torch.Generator | None = None) -> torch.Tensor:
        """Importance-weighted bound on -log p(x) per image (B,), in nats (Burda et al., 2016):

        -log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x),  z_k ~ q(z|x).  K = 1 is the -ELBO; it
        decreases towards -log p(x) as K grows.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}.")
        mu, logvar = self.encode(x)
        B, L = mu.shape
        eps = randn((k, B, L), generator, mu.device)
        z = reparameterize(mu, logvar, eps)  # (K, B, L): K samples per image
        logits = self.decode_logits(z.reshape(k * B, L))  # (K*B, 1, 28, 28)
        target = x.unsqueeze(0).expand(k, *x.shape).reshape(k * B, *x.shape[1:])
        log_px_z = -F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).sum(1)
        log_2pi = math.log(2 * math.pi)
        log_pz = -0.5 * (z.pow(2) + log_2pi).sum(-1)  # (K, B)
        log_qz = -0.5 * (eps.pow(2) + logvar + log_2pi).sum(-1)  # (K, B): log N(z; mu, sigma^2)
        log_w = log_px_z.view(k, B) + log_pz - log_qz  # (K, B)
        return -(torch.logsumexp(log_w, dim=0) - math.log(k))

    # generation helpers --------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, binary: bool = False,
               temperature: float = 1.0) -> torch.Tensor:
        """z ~ N(0, temperature^2 I), then the mean image E[x|z] (or x ~ p(x|z) with ``binary``)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}.")
        z = temperature * randn((n, self.config.latent_dim), generator, self.device)
        probs = self.decode(z)
        if binary:
            return bernoulli(probs, generator)
        return probs

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decode the posterior mean: E[x | z = mu(x)], (B, 1, 28, 28)."""
        mu, _ = self.encode(x)
        return self.decode(mu)

    @torch.no_grad()
    def interpolate(self, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 8) -> torch.Tensor:
        """Decode (1 - w) mu(x_a) + w mu(x_b) for ``steps`` weights w from 0 to 1 -> (steps, 1, 28, 28)."""
        if steps < 2:
            raise ValueError(f"steps must be >= 2, got {steps}.")
        mu, _ = self.encode(torch.stack([x_a.reshape(x_a.shape[-3:]), x_b.reshape(x_b.shape[-3:])]))
        w = torch.linspace(0, 1, steps, device=mu.device)[:, None]  # (steps, 1)
        return self.decode((1 - w) * mu[0] + w * mu[1])

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def config_dict(self) -> dict:
        return asdict(self.config)
