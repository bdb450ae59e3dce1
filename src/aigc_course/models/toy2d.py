"""Generative models of 2D toy data: the four families, each small enough to fit in seconds.

Taught in part 2, "Generative model families side by side" (notebook 2.3). Every model has a
dataclass config, a loss and ``sample(n, generator=None) -> (n, 2)``:

* :class:`ToyAutoregressive`: p(x) = p(x1) p(x2 | x1) over binned coordinates (exact likelihood).
* :class:`ToyVAE`: Kingma & Welling (2014), the negative ELBO = reconstruction + KL(q(z|x) || p(z)).
* :class:`ToyGAN`: Goodfellow et al. (2014), with the non-saturating generator loss -log D(G(z)).
  Two players need two optimisers, so it trains with :func:`train_gan`, not the single-loss ``fit``.
* :class:`ToyDiffusion`: Ho et al. (2020), DDPM with epsilon prediction and a linear beta schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..train import History
from .mlp import MLP, MLPConfig


def _check_points(x: torch.Tensor, dim: int, name: str = "x") -> None:
    if not torch.is_tensor(x) or x.dim() != 2 or x.shape[1] != dim:
        shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise ValueError(f"{name} must be a tensor of shape (B, {dim}), got {shape}.")


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def _randn(shape, generator, device) -> torch.Tensor:
    # Draw on the generator's device (CPU by default) so a seed repeats on any model device.
    gen_device = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=gen_device).to(device)


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
        b1 = torch.multinomial(p1.expand(n, -1), 1, replacement=True, generator=generator)[:, 0]
        p2 = F.softmax(self.logits_x2(b1.to(device)), -1).cpu()  # (n, K)
        b2 = torch.multinomial(p2, 1, generator=generator)[:, 0]
        u = torch.rand(n, 2, generator=generator)
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

    @staticmethod
    def reparameterize(mu, logvar, eps=None):
        # z = mu + sigma * eps: the randomness sits in eps, so gradients flow to mu and logvar.
        eps = torch.randn_like(mu) if eps is None else eps
        return mu + torch.exp(0.5 * logvar) * eps

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Negative ELBO per point (nats) as 'loss', with its two terms 'rec' and 'kl'."""
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        x_mean = self.decode(z)
        # rec = -log N(x; x_mean, sigma^2), summed over the data dimensions
        rec = 0.5 * (((x - x_mean) / self.log_std.exp()) ** 2 + 2 * self.log_std + math.log(2 * math.pi))
        rec = rec.sum(-1).mean()
        # KL(N(mu, sigma^2) || N(0, I)) in closed form (Kingma & Welling 2014, appendix B)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1).mean()
        return {"loss": rec + kl, "rec": rec, "kl": kl}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, mean_only: bool = False):
        """z ~ N(0, I), then x ~ p(x|z) (or its mean with ``mean_only``). -> (n, data_dim)."""
        device = _device(self)
        z = _randn((n, self.config.latent_dim), generator, device)
        x_mean = self.decode(z)
        if mean_only:
            return x_mean
        return x_mean + self.log_std.exp() * _randn(x_mean.shape, generator, device)


# 3. Generative adversarial network --------------------------------------------------------------


@dataclass
class ToyGANConfig:
    data_dim: int = 2
    latent_dim: int = 2
    width: int = 128


class ToyGAN(nn.Module):
    """Generator G: z -> x and discriminator D: x -> logit of "real"."""

    def __init__(self, config: ToyGANConfig | None = None):
        super().__init__()
        self.config = c = config or ToyGANConfig()
        self.generator = MLP(MLPConfig(c.latent_dim, [c.width, c.width], c.data_dim, "relu"))
        self.discriminator = MLP(MLPConfig(c.data_dim, [c.width, c.width], 1, "relu"))

    def _fake(self, n: int, generator=None) -> torch.Tensor:
        return self.generator(_randn((n, self.config.latent_dim), generator, _device(self)))

    def d_loss(self, x_real: torch.Tensor) -> torch.Tensor:
        """-[log D(x) + log(1 - D(G(z)))], on logits with BCEWithLogits (numerically stable)."""
        _check_points(x_real, self.config.data_dim, "x_real")
        x_fake = self._fake(len(x_real)).detach()  # D's step must not update G
        logit_real = self.discriminator(x_real)
        logit_fake = self.discriminator(x_fake)
        return (F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real))
                + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake)))

    def g_loss(self, n: int) -> torch.Tensor:
        """Non-saturating generator loss -log D(G(z)) (Goodfellow et al. 2014, section 3)."""
        logit_fake = self.discriminator(self._fake(n))
        return F.binary_cross_entropy_with_logits(logit_fake, torch.ones_like(logit_fake))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self._fake(n, generator)


def train_gan(model: ToyGAN, data: torch.Tensor, steps: int = 2000, batch_size: int = 256,
              lr: float = 1e-3, betas=(0.5, 0.999), d_steps: int = 1,
              seed: int = 0) -> tuple[History, History]:
    """Alternate D and G updates; returns the (discriminator, generator) loss histories.

    ``fit`` minimises one loss with one optimiser; a GAN is a two-player game with two losses
    and two optimisers, so it has its own loop: :func:`aigc_course.models.gan.train_gan`, shared
    with the image GANs of part 5. ``data`` is a (N, data_dim) tensor, sampled in mini-batches
    with a seeded generator.
    """
    from .gan import train_gan as two_player_loop  # gan.py builds on this file

    _check_points(data, model.config.data_dim, "data")
    return two_player_loop(model, data, steps=steps, batch_size=batch_size, lr=lr, betas=betas,
                           d_steps=d_steps, seed=seed, desc="toy GAN")


# 4. Diffusion (DDPM) ----------------------------------------------------------------------------


@dataclass
class ToyDiffusionConfig:
    data_dim: int = 2
    T: int = 100  # diffusion steps; code indexes them t = 0 .. T-1 (the paper's 1 .. T)
    beta_start: float = 1e-3  # DDPM's 1e-4 .. 0.02 for T = 1000, scaled by 1000 / T
    beta_end: float = 0.2
    width: int = 128
    time_dim: int = 32  # size of the sinusoidal time embedding


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of integer steps (B,) -> (B, dim), as in the Transformer."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class ToyDiffusion(nn.Module):
    """An MLP eps_theta(x_t, t) and the linear-beta schedule, kept as registered buffers."""

    def __init__(self, config: ToyDiffusionConfig | None = None):
        super().__init__()
        self.config = c = config or ToyDiffusionConfig()
        if c.T < 2 or not 0 < c.beta_start < c.beta_end < 1:
            raise ValueError(f"Need T >= 2 and 0 < beta_start < beta_end < 1, got {c}.")
        self.net = MLP(MLPConfig(c.data_dim + c.time_dim, [c.width] * 3, c.data_dim, "silu"))
        betas = torch.linspace(c.beta_start, c.beta_end, c.T, dtype=torch.float64)
        alphas = 1.0 - betas
        # \bar\alpha_t = \prod_{s <= t} \alpha_s
        alphas_cumprod = torch.cumprod(alphas, 0)
        alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]])
        # posterior variance \tilde\beta_t = (1 - \bar\alpha_{t-1}) / (1 - \bar\alpha_t) \beta_t (0 at t=0)
        posterior_variance = betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)
        for name, value in [("betas", betas), ("alphas", alphas), ("alphas_cumprod", alphas_cumprod),
                            ("posterior_variance", posterior_variance)]:
            self.register_buffer(name, value.float())

    def forward(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """eps_theta(x_t, t): (B, D), (B,) -> (B, D)."""
        _check_points(xt, self.config.data_dim, "xt")
        if t.shape != (xt.shape[0],):
            raise ValueError(f"t must have shape ({xt.shape[0]},), got {tuple(t.shape)}.")
        return self.net(torch.cat([xt, timestep_embedding(t, self.config.time_dim)], dim=-1))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None):
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps: jump to step t in one go (DDPM eq. 4)."""
        _check_points(x0, self.config.data_dim, "x0")
        noise = torch.randn_like(x0) if noise is None else noise
        abar = self.alphas_cumprod[t][:, None]  # (B, 1)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def loss(self, x0: torch.Tensor) -> torch.Tensor:
        """DDPM's simple loss ||eps - eps_theta(x_t, t)||^2 with t uniform (DDPM eq. 14)."""
        _check_points(x0, self.config.data_dim, "x0")
        t = torch.randint(0, self.config.T, (x0.shape[0],), device=x0.device)
        eps = torch.randn_like(x0)
        xt = self.q_sample(x0, t, eps)
        return F.mse_loss(self(xt, t), eps)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               return_trajectory: bool = False):
        """Ancestral sampling (DDPM algorithm 2). Returns (n, D), or a list of T+1 (n, D) x_t."""
        device = _device(self)
        # 1. x_T ~ N(0, I)
        x = _randn((n, self.config.data_dim), generator, device)
        trajectory = [x]
        for t in reversed(range(self.config.T)):
            tt = torch.full((n,), t, device=device, dtype=torch.long)
            # 2. mean of p(x_{t-1} | x_t) = (x_t - beta_t / sqrt(1 - abar_t) eps_theta) / sqrt(alpha_t)
            eps_pred = self(x, tt)
            coef = self.betas[t] / (1 - self.alphas_cumprod[t]).sqrt()
            x = (x - coef * eps_pred) / self.alphas[t].sqrt()
            # 3. add noise with variance \tilde\beta_t, except at the last step
            if t > 0:
                x = x + self.posterior_variance[t].sqrt() * _randn(x.shape, generator, device)
            trajectory.append(x)
        return trajectory if return_trajectory else x


__all__ = ["ToyARConfig", "ToyAutoregressive", "ToyVAEConfig", "ToyVAE", "ToyGANConfig", "ToyGAN",
           "train_gan", "ToyDiffusionConfig", "ToyDiffusion", "timestep_embedding"]
