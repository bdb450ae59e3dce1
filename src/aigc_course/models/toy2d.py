"""Generative models of 2D toy data: the four families, each small enough to fit in seconds.

Taught in part 2, "Generative model families side by side" (notebook 2.3). Every model has a
dataclass config, a loss and ``sample(n, generator=None) -> (n, 2)``:

* :class:`ToyAutoregressive`: p(x) = p(x1) p(x2 | x1) over binned coordinates (exact likelihood).
* :class:`ToyVAE`: Kingma & Welling (2014), the negative ELBO = reconstruction + KL(q(z|x) || p(z)).
* :class:`ToyGAN`: Goodfellow et al. (2014), with the non-saturating generator loss -log D(G(z)).
  Two players need two optimisers, so it trains with :func:`aigc_course.train.train_gan`, not
  the single-loss ``fit``.
* :class:`ToyDiffusion`: Ho et al. (2020), DDPM with epsilon prediction and a linear beta
  schedule, sampled with the package's :func:`aigc_course.diffusion.sample_ddpm`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aigc_course.diffusion.samplers import sample_ddpm
from aigc_course.diffusion.schedule import NoiseSchedule, ScheduleConfig, eps_loss
from aigc_course.models.embeddings import timestep_embedding
from aigc_course.models.gan import GAN
from aigc_course.models.gaussian import gaussian_kl, reparameterize
from aigc_course.models.mlp import MLP, MLPConfig
from aigc_course.runtime import multinomial, rand, randn


def _check_points(x: torch.Tensor, dim: int, name: str = "x") -> None:
    if not torch.is_tensor(x) or x.dim() != 2 or x.shape[1] != dim:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"{name} must be a tensor of shape (B, {dim}), got {shape}.")


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


# 1. Autoregressive: p(x1, x2) = p(x1) p(x2 | x1) on a grid of K x K bins -----------------------


@dataclass
class ToyARConfig:
    n_bins: int = 64  # K bins per coordinate
    lo: float = -3.0  # the grid covers [lo, hi]^2; points outside fall into the edge bins
    hi: float = 3.0
    width: int = 128


class ToyAutoregressive(nn.Module):
    """p(x1) is a learned categorical over K bins; p(x2 | x1-bin) is an MLP of the bin centre.

    Inside a bin the density is uniform, so log p(x) = log P(b1) + log P(b2 | b1) - 2 log(bin width):
    an exact, normalised density, which is what :meth:`log_prob` returns.
    """

    def __init__(self, config: ToyARConfig | None = None):
        super().__init__()
        self.config = c = config or ToyARConfig()
        if c.n_bins < 2 or not c.hi > c.lo:
            raise ValueError(f"Need n_bins >= 2 and hi > lo, got {c}.")
        self.bin_width = (c.hi - c.lo) / c.n_bins
        self.logits_x1 = nn.Parameter(torch.zeros(c.n_bins))  # (K,)
        self.cond = MLP(MLPConfig(in_dim=1, hidden=[c.width, c.width], out_dim=c.n_bins))

    def to_bins(self, x: torch.Tensor) -> torch.Tensor:
        """Bin index of each coordinate: (B, 2) float -> (B, 2) long in [0, K)."""
        b = torch.floor((x - self.config.lo) / self.bin_width).long()
        return b.clamp(0, self.config.n_bins - 1)

    def bin_centre(self, b: torch.Tensor) -> torch.Tensor:
        return self.config.lo + (b.float() + 0.5) * self.bin_width

    def logits_x2(self, b1: torch.Tensor) -> torch.Tensor:
        """Logits of p(x2 | x1-bin): (B,) bins -> (B, K)."""
        return self.cond(self.bin_centre(b1)[:, None] / self.config.hi)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log-density of each point (B, 2) -> (B,) in nats."""
        _check_points(x, 2)
        b = self.to_bins(x)
        logp1 = F.log_softmax(self.logits_x1, -1)[b[:, 0]]  # log P(b1)
        logp2 = F.log_softmax(self.logits_x2(b[:, 0]), -1).gather(1, b[:, 1:]).squeeze(1)
        return logp1 + logp2 - 2 * math.log(self.bin_width)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood per point (nats): -E log p(x)."""
        return -self.log_prob(x).mean()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """1. b1 ~ P(b1); 2. b2 ~ P(b2 | b1); 3. uniform jitter inside the two bins. -> (n, 2)."""
        device = _device(self)
        p1 = F.softmax(self.logits_x1, -1).cpu()
        b1 = multinomial(p1.expand(n, -1), 1, generator, replacement=True)[:, 0]
        p2 = F.softmax(self.logits_x2(b1.to(device)), -1).cpu()  # (n, K)
        b2 = multinomial(p2, 1, generator)[:, 0]
        u = rand((n, 2), generator)
        x = self.config.lo + (torch.stack([b1, b2], 1).float() + u) * self.bin_width
        return x.to(device)


# 2. Variational autoencoder ---------------------------------------------------------------------


@dataclass
class ToyVAEConfig:
    data_dim: int = 2
    latent_dim: int = 2
    width: int = 128
    decoder_std: float | None = None  # fixed std of p(x|z); None: one learned std per dimension


class ToyVAE(nn.Module):
    """Encoder x -> (mu, logvar) of q(z|x); decoder z -> mean of the Gaussian p(x|z)."""

    def __init__(self, config: ToyVAEConfig | None = None):
        super().__init__()
        self.config = c = config or ToyVAEConfig()
        self.encoder = MLP(MLPConfig(c.data_dim, [c.width, c.width], 2 * c.latent_dim, "silu"))
        self.decoder = MLP(MLPConfig(c.latent_dim, [c.width, c.width], c.data_dim, "silu"))
        if c.decoder_std is None:
            self.log_std = nn.Parameter(torch.full((c.data_dim,), math.log(0.5)))
        else:
            if c.decoder_std <= 0:
                raise ValueError(f"decoder_std must be positive, got {c.decoder_std}.")
            self.register_buffer("log_std", torch.full((c.data_dim,), math.log(c.decoder_std)))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _check_points(x, self.config.data_dim)
        mu, logvar = self.encoder(x).chunk(2, dim=-1)  # (B, 2L) -> 2 x (B, L)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        _check_points(z, self.config.latent_dim, "z")
        return self.decoder(z)

    reparameterize = staticmethod(reparameterize)  # z = mu + sigma * eps (models/gaussian.py)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Negative ELBO per point (nats) as 'loss', with its two terms 'rec' and 'kl'."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        x_mean = self.decode(z)
        # rec = -log N(x; x_mean, sigma^2), summed over the data dimensions
        rec = 0.5 * (((x - x_mean) / self.log_std.exp()) ** 2 + 2 * self.log_std + math.log(2 * math.pi))
        rec = rec.sum(-1).mean()
        kl = gaussian_kl(mu, logvar).sum(-1).mean()  # KL(q(z|x) || N(0, I)) in closed form
        return {"loss": rec + kl, "rec": rec, "kl": kl}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, mean_only: bool = False):
        """z ~ N(0, I), then x ~ p(x|z) (or its mean with ``mean_only``). -> (n, data_dim)."""
        device = _device(self)
        z = randn((n, self.config.latent_dim), generator, device)
        x_mean = self.decode(z)
        if mean_only:
            return x_mean
        return x_mean + self.log_std.exp() * randn(x_mean.shape, generator, device)


# 3. Generative adversarial network --------------------------------------------------------------


@dataclass
class ToyGANConfig:
    data_dim: int = 2
    latent_dim: int = 2
    width: int = 128


class ToyGAN(GAN):
    """Generator G: z -> x and discriminator D: x -> logit of "real". The losses, ``z`` and
    ``sample`` are those of :class:`aigc_course.models.gan.GAN`; it trains with
    :func:`aigc_course.train.train_gan`."""

    def __init__(self, config: ToyGANConfig | None = None):
        super().__init__()
        self.config = c = config or ToyGANConfig()
        self.data_shape = (c.data_dim,)
        self.generator = MLP(MLPConfig(c.latent_dim, [c.width, c.width], c.data_dim, "relu"))
        self.discriminator = MLP(MLPConfig(c.data_dim, [c.width, c.width], 1, "relu"))


# 4. Diffusion (DDPM) ----------------------------------------------------------------------------


@dataclass
class ToyDiffusionConfig:
    data_dim: int = 2
    T: int = 100  # diffusion steps; code indexes them t = 0 .. T-1 (the paper's 1 .. T)
    beta_start: float = 1e-3  # DDPM's 1e-4 .. 0.02 for T = 1000, scaled by 1000 / T
    beta_end: float = 0.2
    width: int = 128
    time_dim: int = 32  # size of the sinusoidal time embedding


class ToyDiffusion(nn.Module):
    """An MLP eps_theta(x_t, t) with a linear-beta :class:`NoiseSchedule` of T steps.

    Training, the forward process and sampling are the package's: ``eps_loss``, the schedule's
    ``q_sample`` and ``sample_ddpm`` (chapter 3.7 teaches them on images)."""

    def __init__(self, config: ToyDiffusionConfig | None = None):
        super().__init__()
        self.config = c = config or ToyDiffusionConfig()
        if c.T < 2 or not 0 < c.beta_start < c.beta_end < 1:
            raise ValueError(f"Need T >= 2 and 0 < beta_start < beta_end < 1, got {c}.")
        self.net = MLP(MLPConfig(c.data_dim + c.time_dim, [c.width] * 3, c.data_dim, "silu"))
        self.schedule = NoiseSchedule(ScheduleConfig(num_steps=c.T, kind="linear", beta_start=c.beta_start,
                                                     beta_end=c.beta_end))

    def forward(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """eps_theta(x_t, t): (B, D), (B,) -> (B, D)."""
        _check_points(xt, self.config.data_dim, "xt")
        if t.shape != (xt.shape[0],):
            raise ValueError(f"t must have shape ({xt.shape[0]},), got {tuple(t.shape)}.")
        return self.net(torch.cat([xt, timestep_embedding(t, self.config.time_dim)], dim=-1))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None):
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps: jump to step t in one go (DDPM eq. 4)."""
        _check_points(x0, self.config.data_dim, "x0")
        return self.schedule.q_sample(x0, t, noise)

    def loss(self, x0: torch.Tensor) -> torch.Tensor:
        """DDPM's simple loss ||eps - eps_theta(x_t, t)||^2 with t uniform (DDPM eq. 14)."""
        _check_points(x0, self.config.data_dim, "x0")
        return eps_loss(self, self.schedule, x0)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               return_trajectory: bool = False):
        """Ancestral sampling (DDPM algorithm 2) with :func:`sample_ddpm`, unclipped (2D data
        are not bounded). Returns (n, D), or the list of T+1 states x_T, ..., x_0."""
        trajectory = []
        x = sample_ddpm(self, self.schedule, (n, self.config.data_dim), generator=generator, device=_device(self),
                        clip_x0=False, callback=(lambda t, xt, eps: trajectory.append(xt)) if return_trajectory else None)
        return trajectory + [x] if return_trajectory else x


__all__ = ["ToyARConfig", "ToyAutoregressive", "ToyVAEConfig", "ToyVAE", "ToyGANConfig", "ToyGAN",
           "ToyDiffusionConfig", "ToyDiffusion"]
