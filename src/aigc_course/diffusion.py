"""Denoising diffusion: the noise schedule, the forward process and the DDPM / DDIM samplers.

Taught in the diffusion chapters of parts 3-5 (forward and reverse process, the closed forms of
part 4, DDPM and DDIM in practice). The schedule is an object of its own, apart from any network:
a sampler only needs a function ``eps_model(x_t, t) -> predicted noise``.

Notation (Ho et al., 2020): ``betas[t]`` is the variance added at step t, ``alphas = 1 - betas``,
``alphas_cumprod[t]`` = abar_t = prod_{s <= t} alpha_s. Steps are numbered 0 .. T-1 as in code
(the paper's t = 1 .. T), so x_t for index t has been noised t + 1 times.

* forward, in closed form: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, eps ~ N(0, I);
* training: the epsilon loss || eps - eps_theta(x_t, t) ||^2 at a uniformly drawn t;
* DDPM ancestral step: the posterior mean of q(x_{t-1} | x_t, x0) with x0 predicted from eps,
  plus noise of variance beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t;
* DDIM step (Song et al., 2021): with eta = 0 deterministic, and it can skip steps; eta > 0 adds
  fresh noise at every step (eta = 1 with every step visited is the DDPM step).

The constants and one step of each sampler equal diffusers' ``DDPMScheduler`` and
``DDIMScheduler`` (``clip_sample=False``); the tests check it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


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
    t = torch.randint(0, schedule.num_steps, (x0.shape[0],), generator=generator).to(x0.device)
    eps = torch.randn(x0.shape, generator=generator).to(x0)
    return torch.mean((eps - eps_model(schedule.q_sample(x0, t, eps), t, **model_kwargs)) ** 2)


def ddpm_step(schedule: NoiseSchedule, xt: torch.Tensor, t: int, eps: torch.Tensor,
              noise: torch.Tensor | None = None, clip_x0: bool = False) -> torch.Tensor:
    """One ancestral step x_t -> x_{t-1}: posterior mean with x0 predicted from eps, plus noise
    of variance beta~_t (none at t = 0). ``clip_x0`` clips the predicted x0 to [-1, 1]."""
    x0 = schedule.predict_x0(xt, t, eps)
    if clip_x0:
        x0 = x0.clamp(-1, 1)
    mean = schedule.posterior_mean(x0, xt, t)
    if t == 0:
        return mean
    noise = torch.randn_like(xt) if noise is None else noise
    var = schedule.posterior_variance[t].clamp(min=1e-20)
    return mean + var.sqrt().to(xt) * noise


def ddim_step(schedule: NoiseSchedule, xt: torch.Tensor, t: int, prev_t: int, eps: torch.Tensor,
              clip_x0: bool = False, eta: float = 0.0, noise: torch.Tensor | None = None) -> torch.Tensor:
    """One DDIM step from step t to an earlier step prev_t (-1 = the end). With eta = 0 it is
    deterministic: x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev) eps.

    ``eta`` > 0 (Song et al., 2021, eq. 16) adds fresh ``noise`` of standard deviation
    sigma = eta sqrt((1 - abar_prev) / (1 - abar) (1 - abar / abar_prev)) and shrinks the eps
    term to sqrt(1 - abar_prev - sigma^2) eps, so the marginals stay the same; eta = 1 with every
    step visited is DDPM's ancestral step (tested).

    ``clip_x0`` clips x0_hat to [-1, 1] and re-derives eps from the clipped x0_hat, so that the
    two terms describe the same point (GLIDE's choice; diffusers' ``use_clipped_model_output``).
    Keeping the unclipped eps next to a clipped x0_hat adds an error at every step: measured on
    the course's CPU-trained pixel models, it made 50 steps worse than 10."""
    if not -1 <= prev_t < t:
        raise ValueError(f"prev_t must satisfy -1 <= prev_t < t, got t={t}, prev_t={prev_t}.")
    if eta < 0:
        raise ValueError(f"eta must be >= 0 (0: deterministic DDIM, 1: DDPM-like noise), got {eta}.")
    if eta > 0 and noise is None:
        raise ValueError("eta > 0 adds fresh noise: pass noise=torch.randn_like(xt).")
    abar = schedule.alphas_cumprod[t].to(xt)
    x0 = schedule.predict_x0(xt, t, eps)
    if clip_x0:
        x0 = x0.clamp(-1, 1)
        eps = (xt - abar.sqrt() * x0) / (1 - abar).sqrt()
    abar_prev = (schedule.alphas_cumprod[prev_t] if prev_t >= 0 else torch.tensor(1.0)).to(xt)
    if eta == 0:
        return abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps
    sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()
    return abar_prev.sqrt() * x0 + (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps + sigma * noise


def ddim_timesteps(num_train: int, num_steps: int) -> list[int]:
    """The steps DDIM visits, from the noisiest down: 0, k, 2k, ... reversed (k = T // steps),
    diffusers' "leading" spacing."""
    if not 1 <= num_steps <= num_train:
        raise ValueError(f"num_steps must be in 1 .. {num_train}, got {num_steps}.")
    k = num_train // num_steps
    return [i * k for i in range(num_steps)][::-1]


@torch.no_grad()
def sample_ddpm(eps_model, schedule: NoiseSchedule, shape: tuple[int, ...], generator: torch.Generator | None = None,
                device: str | torch.device = "cpu", clip_x0: bool = True, **model_kwargs) -> torch.Tensor:
    """Ancestral sampling through all T steps, from x_{T-1} ~ N(0, I)."""
    x = torch.randn(shape, generator=generator).to(device)
    for t in range(schedule.num_steps - 1, -1, -1):
        eps = eps_model(x, torch.full((shape[0],), t, device=device), **model_kwargs)
        noise = torch.randn(shape, generator=generator).to(device)
        x = ddpm_step(schedule, x, t, eps, noise=noise, clip_x0=clip_x0)
    return x


@torch.no_grad()
def sample_ddim(eps_model, schedule: NoiseSchedule, shape: tuple[int, ...], num_steps: int = 50,
                generator: torch.Generator | None = None, device: str | torch.device = "cpu",
                clip_x0: bool = True, x: torch.Tensor | None = None, eta: float = 0.0,
                **model_kwargs) -> torch.Tensor:
    """DDIM sampling in ``num_steps`` steps. With ``eta = 0`` (the default) it is deterministic:
    the same starting noise ``x`` always gives the same image; ``eta > 0`` draws fresh noise at
    every step from ``generator`` (chapter 5.9 measures what it changes)."""
    x = torch.randn(shape, generator=generator).to(device) if x is None else x.to(device)
    steps = ddim_timesteps(schedule.num_steps, num_steps)
    for i, t in enumerate(steps):
        prev_t = steps[i + 1] if i + 1 < len(steps) else -1
        eps = eps_model(x, torch.full((shape[0],), t, device=device), **model_kwargs)
        noise = torch.randn(x.shape, generator=generator).to(device) if eta > 0 else None
        x = ddim_step(schedule, x, t, prev_t, eps, clip_x0=clip_x0, eta=eta, noise=noise)
    return x


class EMA:
    """An exponential moving average of a model's weights, the copy diffusion models sample
    with: theta_ema <- decay theta_ema + (1 - decay) theta after every optimizer step.

    The average starts at zero and is divided by 1 - decay^n after n updates (the bias
    correction of Adam): a plain EMA started at the initial weights would still hold
    decay^n of them, 13.5% after 2,000 steps at decay 0.999, and untrained weights in the
    shipped model make its samples noisy. Buffers that are not floating point are copied."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.999):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}.")
        self.decay = decay
        self.num_updates = 0
        self.shadow = {k: torch.zeros_like(v) if v.dtype.is_floating_point else v.detach().clone()
                       for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.num_updates += 1
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].lerp_(v.detach(), 1.0 - self.decay)
            else:
                self.shadow[k].copy_(v)

    def averaged(self) -> dict[str, torch.Tensor]:
        """The bias-corrected average, a weighted mean of the weights after each update."""
        if self.num_updates == 0:
            raise ValueError("The EMA has no update yet: call update(model) after an optimizer step.")
        correction = 1.0 - self.decay ** self.num_updates
        return {k: v / correction if v.dtype.is_floating_point else v for k, v in self.shadow.items()}

    def copy_to(self, model: torch.nn.Module) -> None:
        """Load the averaged weights into ``model``."""
        model.load_state_dict(self.averaged())
