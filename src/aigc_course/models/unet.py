"""A small U-Net that predicts the noise of a diffusion model, for 28x28 images.

Taught in the diffusion chapters of parts 3 and 5. Built bottom-up on the sinusoidal timestep
embedding of :mod:`aigc_course.models.embeddings`: a residual block that adds the (time + condition) embedding to its features, a
self-attention block at the coarsest resolution, then the U-Net: 28x28 -> 14x14 -> 7x7 and back,
with skip connections (Ronneberger et al., 2015; the diffusion variant of Ho et al., 2020).

Conditioning, optional: a class label ``y`` (an embedding table with one extra row, the "null"
label used for classifier-free guidance), or a vector ``cond`` such as a text embedding (layer-normalised,
then an MLP into the time-embedding space). :func:`aigc_course.diffusion.guided_eps` combines a
conditional and an unconditional prediction: eps = eps_uncond + s (eps_cond - eps_uncond) (Ho &
Salimans, 2022).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aigc_course.models.embeddings import timestep_embedding


@dataclass
class UNetConfig:
    in_channels: int = 1
    base: int = 32  # channels at full resolution
    mults: tuple[int, ...] = (1, 2, 2)  # channel multiplier per resolution: 28, 14, 7
    time_dim: int = 128
    num_classes: int | None = None  # class conditioning; label num_classes is the null label
    cond_dim: int | None = None  # vector conditioning (e.g. a text embedding)
    attention: bool = True  # self-attention at the coarsest resolution
    dropout: float = 0.0


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(8, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = nn.GroupNorm(8, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]  # (B, C) -> (B, C, 1, 1): one shift per map
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return h + self.skip(x)


class AttentionBlock(nn.Module):
    """Self-attention over the pixels of a feature map (every position attends to every other)."""

    def __init__(self, channels: int, n_head: int = 4):
        super().__init__()
        self.n_head = n_head
        self.norm = nn.GroupNorm(8, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).chunk(3, dim=1)
        # (B, C, H, W) -> (B, nh, H*W, C/nh): pixels become the sequence
        q, k, v = (z.reshape(B, self.n_head, C // self.n_head, H * W).transpose(2, 3) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v)  # (B, nh, HW, C/nh)
        y = y.transpose(2, 3).reshape(B, C, H, W)
        return x + self.proj(y)


class UNet(nn.Module):
    """eps_theta(x_t, t[, y | cond]): noisy images (B, C, 28, 28) -> predicted noise, same shape."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = cfg = config
        chans = [cfg.base * m for m in cfg.mults]
        self.time_mlp = nn.Sequential(nn.Linear(cfg.time_dim, cfg.time_dim), nn.SiLU(),
                                      nn.Linear(cfg.time_dim, cfg.time_dim))
        self.label_emb = nn.Embedding(cfg.num_classes + 1, cfg.time_dim) if cfg.num_classes else None
        # a text embedding is a unit vector whose entries are ~1/sqrt(D): normalise it first, or its
        # signal is ten times weaker than the timestep's and training learns to ignore it
        self.cond_proj = nn.Sequential(nn.LayerNorm(cfg.cond_dim), nn.Linear(cfg.cond_dim, cfg.time_dim), nn.SiLU(),
                                       nn.Linear(cfg.time_dim, cfg.time_dim)) if cfg.cond_dim else None
        self.inp = nn.Conv2d(cfg.in_channels, chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        c = chans[0]
        for i, c_out in enumerate(chans):
            self.down.append(ResBlock(c, c_out, cfg.time_dim, cfg.dropout))
            c = c_out
            is_last = i == len(chans) - 1
            self.downsample.append(nn.Identity() if is_last else nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.mid1 = ResBlock(c, c, cfg.time_dim, cfg.dropout)
        self.mid_attn = AttentionBlock(c) if cfg.attention else nn.Identity()
        self.mid2 = ResBlock(c, c, cfg.time_dim, cfg.dropout)
        self.up = nn.ModuleList()
        for c_skip in reversed(chans):
            self.up.append(ResBlock(c + c_skip, c_skip, cfg.time_dim, cfg.dropout))
            c = c_skip
        self.out = nn.Sequential(nn.GroupNorm(8, c), nn.SiLU(), nn.Conv2d(c, cfg.in_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)  # start by predicting zero noise
        nn.init.zeros_(self.out[-1].bias)

    def embed(self, t: torch.Tensor, y: torch.Tensor | None, cond: torch.Tensor | None) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.config.time_dim))
        if y is not None:
            if self.label_emb is None:
                raise ValueError("This UNet has no class conditioning (UNetConfig.num_classes is None).")
            emb = emb + self.label_emb(y)
        if cond is not None:
            if self.cond_proj is None:
                raise ValueError("This UNet has no vector conditioning (UNetConfig.cond_dim is None).")
            emb = emb + self.cond_proj(cond)
        return emb

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None,
                cond: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"UNet expects images (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}.")
        t = torch.as_tensor(t, device=x.device).expand(x.shape[0]) if torch.as_tensor(t).dim() == 0 else t
        emb = self.embed(t, y, cond)
        h = self.inp(x)
        skips = []
        for block, down in zip(self.down, self.downsample):
            h = block(h, emb)
            skips.append(h)
            h = down(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for block in self.up:
            s = skips.pop()
            if h.shape[-1] != s.shape[-1]:
                h = F.interpolate(h, size=s.shape[-2:], mode="nearest")
            h = block(torch.cat([h, s], dim=1), emb)
        return self.out(h)

    def null_label(self, batch_size: int, device) -> torch.Tensor:
        """The "no class" label of classifier-free guidance (index num_classes)."""
        return torch.full((batch_size,), self.config.num_classes, device=device, dtype=torch.long)

    def config_dict(self) -> dict:
        return asdict(self.config)
