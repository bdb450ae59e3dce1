"""Generative adversarial networks: the two losses, an MLP GAN and a DCGAN for 28x28.

Taught in part 3, "The GAN training loop" (notebook 3.5), and part 5, "MNIST GAN and DCGAN"
(notebook 5.7); the theory behind the losses is in part 4, "GAN theory" (notebook 4.3).

Goodfellow et al. (2014): a generator G maps noise z ~ N(0, I) to a sample, a discriminator D
scores "real vs generated". Conventions of this file (the fixes of a common beginner's version):

* data live in [-1, 1], the range of the generator's final tanh;
* D returns a LOGIT, never a probability: the losses use ``binary_cross_entropy_with_logits``,
  which computes log sigmoid stably (Sigmoid + BCELoss overflows to log 0 when D is confident);
* G minimises the non-saturating loss -log D(G(z)) instead of log(1 - D(G(z))): both push D(G(z))
  up, but early in training D(G(z)) is near 0, where log(1 - D) is flat (its gradient with respect
  to the logit is -D, almost 0) while -log D has gradient -(1 - D), almost -1, so G keeps learning.

:class:`MinibatchStdDev` is one remedy for mode collapse (Karras et al. 2018, section 3): D sees
how varied a whole batch is, so a generator that emits near-identical samples is easy to catch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aigc_course.runtime import randn


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


# 1. The two losses, on logits --------------------------------------------------------------------


def d_loss_from_logits(logit_real: torch.Tensor, logit_fake: torch.Tensor) -> torch.Tensor:
    """-[log D(x) + log(1 - D(G(z)))] averaged over the batch; D = sigmoid(logit)."""
    return (F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real))
            + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake)))


def g_loss_from_logits(logit_fake: torch.Tensor, saturating: bool = False) -> torch.Tensor:
    """Non-saturating -log D(G(z)) (default), or the minimax log(1 - D(G(z))) for comparison."""
    if saturating:
        # log(1 - sigmoid(l)) = -softplus(l)
        return -F.softplus(logit_fake).mean()
    return F.binary_cross_entropy_with_logits(logit_fake, torch.ones_like(logit_fake))


# 2. Minibatch standard deviation (Karras et al. 2018) --------------------------------------------


class MinibatchStdDev(nn.Module):
    """Append one feature: the average standard deviation across a group of samples.

    (B, F) -> (B, F + 1) or (B, C, H, W) -> (B, C + 1, H, W). The batch is split into groups of
    ``group_size`` (the whole batch when B is not a multiple); within a group the std of every
    feature is taken over the samples and averaged into one number, copied to each member.
    """

    def __init__(self, group_size: int = 4):
        super().__init__()
        if group_size < 2:
            raise ValueError(f"group_size must be at least 2 (a std needs two samples), got {group_size}.")
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        g = self.group_size if B % self.group_size == 0 else B
        y = x.reshape(g, B // g, *x.shape[1:])  # (G, M, ...): samples m, m + M, ... form group m
        std = (y.var(dim=0, unbiased=False) + 1e-8).sqrt()  # (M, ...)
        s = std.flatten(1).mean(1).repeat(g)  # (B,): sample b gets the value of group b % M
        extra = s.view(B, *([1] * (x.dim() - 1))).expand(B, 1, *x.shape[2:])
        return torch.cat([x, extra], dim=1)


# 3. The shared model: two players, two losses, sampling ------------------------------------------


class GAN(nn.Module):
    """Base class: subclasses build ``self.generator`` (z -> x) and ``self.discriminator`` (x -> logit)."""

    config: object
    data_shape: tuple[int, ...]

    def check_data(self, x: torch.Tensor, name: str = "x_real") -> None:
        if not torch.is_tensor(x) or tuple(x.shape[1:]) != self.data_shape or x.shape[0] < 1:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"{name} must have shape (B, {', '.join(map(str, self.data_shape))}), got {shape}; "
                             "images must be scaled to [-1, 1] (image_tensors(..., scale='[-1, 1]')).")

    def z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Latent codes z ~ N(0, I): (n, latent_dim), on the model's device."""
        if n < 1:
            raise ValueError(f"n must be positive, got {n}.")
        return randn((n, self.config.latent_dim), generator, _device(self))

    def d_loss(self, x_real: torch.Tensor) -> torch.Tensor:
        """Discriminator loss on a real batch and as many fresh fakes (detached: D's step leaves G alone)."""
        self.check_data(x_real)
        x_fake = self.generator(self.z(len(x_real))).detach()
        return d_loss_from_logits(self.discriminator(x_real), self.discriminator(x_fake))

    def g_loss(self, n: int, saturating: bool = False) -> torch.Tensor:
        """Generator loss on n fresh fakes; gradients reach D's parameters too, but only G's optimiser steps."""
        return g_loss_from_logits(self.discriminator(self.generator(self.z(n))), saturating)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, z: torch.Tensor | None = None):
        """n samples (n, *data_shape) in [-1, 1] (or the images of given codes ``z``)."""
        z = self.z(n, generator) if z is None else z.to(_device(self))
        return self.generator(z)

    def config_dict(self) -> dict:
        return asdict(self.config)


# 4. MLP GAN ---------------------------------------------------------------------------------------


@dataclass
class MLPGANConfig:
    data_shape: tuple[int, ...] = (1, 28, 28)  # (2,) for 2D points
    latent_dim: int = 64
    hidden: int = 256
    tanh: bool = True  # squash G's output to [-1, 1] (images); False for unbounded 2D data
    minibatch_std: bool = False


class MLPGAN(GAN):
    """Fully connected G and D: the first GAN of Goodfellow et al. (2014), with LeakyReLU(0.2)."""

    def __init__(self, config: MLPGANConfig | None = None):
        super().__init__()
        self.config = c = config or MLPGANConfig()
        self.data_shape = tuple(c.data_shape)
        d, h = math.prod(self.data_shape), c.hidden
        act = lambda: nn.LeakyReLU(0.2)  # noqa: E731
        self.generator = nn.Sequential(
            nn.Linear(c.latent_dim, h), act(), nn.Linear(h, h), act(), nn.Linear(h, d),
            nn.Tanh() if c.tanh else nn.Identity(),
            nn.Unflatten(1, self.data_shape),  # (B, d) -> (B, *data_shape)
        )
        self.discriminator = nn.Sequential(
            nn.Flatten(), nn.Linear(d, h), act(), nn.Linear(h, h), act(),
            MinibatchStdDev() if c.minibatch_std else nn.Identity(),
            nn.Linear(h + int(c.minibatch_std), 1),
        )


# 5. DCGAN for 28x28 --------------------------------------------------------------------------------


@dataclass
class DCGANConfig:
    latent_dim: int = 64
    g_channels: int = 128  # channels of G's 7x7 map (halved at 14x14)
    d_channels: int = 32  # channels of D's 14x14 map (doubled at 7x7)
    image_channels: int = 1
    minibatch_std: bool = False


class DCGAN(GAN):
    """Radford et al. (2016) scaled to MNIST: strided (transposed) convolutions, BatchNorm, no pooling.

    G: z (B, L) -> (B, C, 7, 7) -> (B, C/2, 14, 14) -> (B, 1, 28, 28), ReLU inside, tanh at the end.
    D: (B, 1, 28, 28) -> (B, c, 14, 14) -> (B, 2c, 7, 7) -> logit, LeakyReLU(0.2) inside.
    """

    def __init__(self, config: DCGANConfig | None = None):
        super().__init__()
        self.config = c = config or DCGANConfig()
        if c.g_channels % 2 or c.g_channels < 2 or c.d_channels < 1:
            raise ValueError(f"g_channels must be even and positive, d_channels positive; got {c}.")
        self.data_shape = (c.image_channels, 28, 28)
        C, dc = c.g_channels, c.d_channels
        self.generator = nn.Sequential(
            nn.Linear(c.latent_dim, C * 7 * 7, bias=False),
            nn.Unflatten(1, (C, 7, 7)),  # (B, C*49) -> (B, C, 7, 7)
            nn.BatchNorm2d(C), nn.ReLU(),
            nn.ConvTranspose2d(C, C // 2, 4, stride=2, padding=1, bias=False),  # 7 -> 14
            nn.BatchNorm2d(C // 2), nn.ReLU(),
            nn.ConvTranspose2d(C // 2, c.image_channels, 4, stride=2, padding=1),  # 14 -> 28
            nn.Tanh(),
        )
        extra = int(c.minibatch_std)
        self.discriminator = nn.Sequential(
            nn.Conv2d(c.image_channels, dc, 4, stride=2, padding=1), nn.LeakyReLU(0.2),  # 28 -> 14
            nn.Conv2d(dc, 2 * dc, 4, stride=2, padding=1, bias=False),  # 14 -> 7
            nn.BatchNorm2d(2 * dc), nn.LeakyReLU(0.2),
            MinibatchStdDev() if c.minibatch_std else nn.Identity(),
            nn.Flatten(), nn.Linear((2 * dc + extra) * 7 * 7, 1),  # (B, 2c(+1), 7, 7) -> (B, 1)
        )
        self.apply(_dcgan_init)


def _dcgan_init(m: nn.Module) -> None:
    # DCGAN's initialisation: weights ~ N(0, 0.02), BatchNorm scales ~ N(1, 0.02)
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


__all__ = ["d_loss_from_logits", "g_loss_from_logits", "MinibatchStdDev", "GAN", "MLPGANConfig", "MLPGAN",
           "DCGANConfig", "DCGAN"]
