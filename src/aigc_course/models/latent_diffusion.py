"""Latent diffusion in miniature: a KL-regularised autoencoder and a U-Net on its latents.

Taught in chapters 3.8 and 5.11 (Rombach et al., 2022). Stable Diffusion does not denoise pixels:
a variational autoencoder maps a 512x512x3 image to a 64x64x4 latent, the U-Net denoises
latents, and the decoder turns the final latent back into pixels. Here, at MNIST size:

* ``KLAutoencoder``: 1x28x28 -> 4x7x7 (4x fewer positions per side, as 8x in Stable Diffusion),
  a Gaussian posterior (mean, log-variance) with a tiny KL weight that keeps the latent
  space smooth and centred without making it a "real" VAE, and a decoder back to 28x28;
* ``LatentDiffusion``: the autoencoder plus a text-conditioned ``UNet`` with 4 input channels.
  Latents are multiplied by ``latent_scale`` (1 / their standard deviation, measured after the
  autoencoder is trained; Stable Diffusion's constant 0.18215 plays the same role) so that the
  diffusion sees data of unit variance, as its noise schedule assumes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aigc_course.models.gaussian import gaussian_kl, reparameterize
from aigc_course.models.unet import UNet, UNetConfig


@dataclass
class LatentDiffusionConfig:
    latent_channels: int = 4
    ae_channels: tuple[int, int] = (32, 64)
    kl_weight: float = 1e-4
    unet_base: int = 32
    unet_mults: tuple[int, ...] = (1, 2)  # 7x7 -> 4x4 and back
    time_dim: int = 128
    cond_dim: int = 64  # the mini-CLIP's text embedding
    latent_scale: float = 1.0  # set after the autoencoder is trained


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.GroupNorm(8, c_out), nn.SiLU())


class KLAutoencoder(nn.Module):
    """encode: (B, 1, 28, 28) -> posterior mean and log-variance (B, C, 7, 7); decode: back."""

    def __init__(self, latent_channels: int, channels: tuple[int, int], kl_weight: float):
        super().__init__()
        c1, c2 = channels
        self.kl_weight = kl_weight
        self.encoder = nn.Sequential(_conv(1, c1), _conv(c1, c1, 2), _conv(c1, c2), _conv(c2, c2, 2),  # 28 -> 7
                                     nn.Conv2d(c2, 2 * latent_channels, 1))
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, c2, 3, padding=1), nn.SiLU(), _conv(c2, c2),
            nn.Upsample(scale_factor=2, mode="nearest"), _conv(c2, c1),  # 7 -> 14
            nn.Upsample(scale_factor=2, mode="nearest"), _conv(c1, c1),  # 14 -> 28
            nn.Conv2d(c1, 1, 3, padding=1),
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"The autoencoder expects images (B, 1, 28, 28) in [-1, 1], got {tuple(x.shape)}.")
        mean, logvar = self.encoder(x).chunk(2, dim=1)  # (B, 2C, 7, 7) -> 2 x (B, C, 7, 7)
        return mean, logvar.clamp(-30, 20)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mean squared reconstruction error per pixel + kl_weight * KL(q(z|x) || N(0, I)) per latent unit."""
        mean, logvar = self.encode(x)
        z = reparameterize(mean, logvar)
        recon = F.mse_loss(self.decode(z), x)
        kl = gaussian_kl(mean, logvar).mean()
        return {"loss": recon + self.kl_weight * kl, "recon": recon.detach(), "kl": kl.detach()}


class LatentDiffusion(nn.Module):
    """The autoencoder and the latent U-Net; ``to_latent`` / ``to_image`` handle the scaling."""

    def __init__(self, config: LatentDiffusionConfig):
        super().__init__()
        self.config = cfg = config
        self.autoencoder = KLAutoencoder(cfg.latent_channels, cfg.ae_channels, cfg.kl_weight)
        self.unet = UNet(UNetConfig(in_channels=cfg.latent_channels, base=cfg.unet_base, mults=cfg.unet_mults,
                                    time_dim=cfg.time_dim, cond_dim=cfg.cond_dim))

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.config.latent_channels, 7, 7)

    @torch.no_grad()
    def to_latent(self, x: torch.Tensor) -> torch.Tensor:
        """Images -> scaled latents (the posterior mean, as Stable Diffusion's training does with a sample)."""
        return self.autoencoder.encode(x)[0] * self.config.latent_scale

    def to_image(self, z: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.decode(z / self.config.latent_scale)

    def forward(self, z: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.unet(z, t, cond=cond)

    def config_dict(self) -> dict:
        return asdict(self.config)
