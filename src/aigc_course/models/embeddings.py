"""Sinusoidal features of integer timesteps, the time input of every diffusion network.

Taught in chapter 3.7 (a denoiser must know how noisy its input is) and used by the U-Net and
the toy 2D diffusion model. The frequencies are those of the Transformer's positions (Vaswani et
al., 2017, section 3.5); the cosines come first, as in the course's shipped U-Net weights and in
diffusers' ``get_timestep_embedding(..., flip_sin_to_cos=True)``.
"""

from __future__ import annotations

import math

import torch


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of integer timesteps t (B,) -> (B, dim): [cos(t w_i), sin(t w_i)]
    with w_i = max_period^(-i / (dim / 2)), i = 0 .. dim/2 - 1."""
    if t.dim() != 1:
        raise ValueError(f"t must be a batch of timesteps (B,), got shape {tuple(t.shape)}.")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)  # (half,)
    args = t.float()[:, None] * freqs[None, :]  # (B, half)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
