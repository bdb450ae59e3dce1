"""Denoising diffusion, part 1: the noise schedule, the forward process and the training loss.

Taught in the diffusion chapters of parts 3-5 (forward and reverse process, the closed forms of
part 4, DDPM and DDIM in practice). The schedule is an object of its own, apart from any network:
a sampler only needs a function ``eps_model(x_t, t) -> predicted noise``.

Notation (Ho et al., 2020): ``betas[t]`` is the variance added at step t, ``alphas = 1 - betas``,
``alphas_cumprod[t]`` = abar_t = prod_{s <= t} alpha_s. Steps are numbered 0 .. T-1 as in code
(the paper's t = 1 .. T), so x_t for index t has been noised t + 1 times.

* forward, in closed form: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, eps ~ N(0, I);
* the posterior q(x_{t-1} | x_t, x0), whose mean and variance the DDPM step uses;
* training: the epsilon loss || eps - eps_theta(x_t, t) ||^2 at a uniformly drawn t.

The samplers that run the process backwards are in :mod:`aigc_course.diffusion.samplers`. The
constants equal diffusers' ``DDPMScheduler`` and ``DDIMScheduler``; the tests check it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from aigc_course.runtime import randint, randn


@dataclass(frozen=True)
class ScheduleConfig:
    num_steps: int = 1000
    kind: str = "linear"  # "linear" (Ho et al., 2020) or "cosine" (Nichol & Dhariwal, 2021)
    beta_start: float = 1e-4  # linear only
    beta_end: float = 0.02  # linear only
    max_beta: float = 0.999  # cosine only: clip, as the cosine's last betas approach 1


class NoiseSchedule:
    """The constants of a diffusion process, as float32 tensors of length ``num_steps``."""

    def __init__(self, config: ScheduleConfig | None = None):
        cfg = config or ScheduleConfig()
        if cfg.num_steps < 2:
            raise ValueError(f"num_steps must be >= 2, got {cfg.num_steps}.")
        if cfg.kind == "linear":
            betas = torch.linspace(cfg.beta_start, cfg.beta_end, cfg.num_steps, dtype=torch.float32)
        elif cfg.kind == "cosine":
            def abar(u: float) -> float:  # u in [0, 1]; the offset 0.008 keeps beta_0 from being tiny
                return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

            T = cfg.num_steps
            betas = torch.tensor([min(1 - abar((i + 1) / T) / abar(i / T), cfg.max_beta) for i in range(T)],
                                 dtype=torch.float32)
        else:
            raise ValueError(f"Unknown schedule kind {cfg.kind!r}: use 'linear' or 'cosine'.")
        self.config = cfg
        self.num_steps = cfg.num_steps
        self.betas = betas
        self.alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(self.alphas, dim=0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1), self.alphas_cumprod[:-1]])
        # beta_t recomputed from the products, 1 - abar_t / abar_{t-1}: equal in exact arithmetic,
        # and in float32 consistent with 1 - abar_t below (as diffusers does), which matters at t = 0
        self.betas_from_products = 1 - self.alphas_cumprod / self.alphas_cumprod_prev
        # variance of q(x_{t-1} | x_t, x0) (beta tilde); 0 at t = 0
        self.posterior_variance = (self.betas_from_products * (1 - self.alphas_cumprod_prev)
                                   / (1 - self.alphas_cumprod))

    def _at(self, values: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """values[t] for a batch of steps t (B,), shaped (B, 1, 1, ...) to broadcast against x."""
        t = torch.as_tensor(t, device=values.device).long()
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"t must be a scalar or have shape ({x.shape[0]},), got {tuple(t.shape)}.")
        if (t < 0).any() or (t >= self.num_steps).any():
            raise ValueError(f"t must be in 0 .. {self.num_steps - 1}.")
        return values[t].to(x).view(-1, *([1] * (x.dim() - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """Draw x_t ~ q(x_t | x0) in one shot: sqrt(abar_t) x0 + sqrt(1 - abar_t) eps."""
        eps = torch.randn_like(x0) if eps is None else eps
        abar = self._at(self.alphas_cumprod, t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * eps

    def predict_x0(self, xt: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Invert the forward formula: x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)."""
        abar = self._at(self.alphas_cumprod, t, xt)
        return (xt - (1 - abar).sqrt() * eps) / abar.sqrt()

    def posterior_mean(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Mean of q(x_{t-1} | x_t, x0) (Ho et al., 2020, eq. 7)."""
        abar, abar_prev = self._at(self.alphas_cumprod, t, xt), self._at(self.alphas_cumprod_prev, t, xt)
        beta = self._at(self.betas_from_products, t, xt)
        return (abar_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - abar_prev) * xt) / (1 - abar)

    def __repr__(self) -> str:
        return f"NoiseSchedule({self.config.kind}, T={self.num_steps})"


def eps_loss(eps_model, schedule: NoiseSchedule, x0: torch.Tensor, generator: torch.Generator | None = None,
             **model_kwargs) -> torch.Tensor:
    """The simplified DDPM loss: mean of (eps - eps_theta(x_t, t))^2 at uniformly drawn t."""
    t = randint(schedule.num_steps, (x0.shape[0],), generator, x0.device)
    eps = randn(x0.shape, generator, x0.device).to(x0.dtype)
    return torch.mean((eps - eps_model(schedule.q_sample(x0, t, eps), t, **model_kwargs)) ** 2)
