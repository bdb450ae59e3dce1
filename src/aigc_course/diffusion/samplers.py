"""Denoising diffusion, part 2: running the process backwards with DDPM and DDIM.

Taught in chapters 3.7 (the reverse process), 4.5 (its mathematics), 5.9 (DDPM and DDIM in
practice) and 5.10-5.11 (classifier-free guidance). A sampler only needs a function
``eps_model(x_t, t, **model_kwargs) -> predicted noise`` and a :class:`NoiseSchedule`.

* :func:`ddpm_step`: one ancestral step (Ho et al., 2020, algorithm 2);
* :func:`ddim_step`: one DDIM step, deterministic at eta = 0, able to skip steps (Song et al.,
  2021, eq. 12 and 16);
* :func:`sample_ddpm` / :func:`sample_ddim`: the loops. Each is written once; figures that look
  inside a run pass a ``callback(t, xt, eps)``, called at every step with the current sample
  and the noise predicted from it (as diffusers' ``callback_on_step_end``);
* :func:`guided_eps`: classifier-free guidance (Ho & Salimans, 2022).

One step of each sampler equals diffusers' ``DDPMScheduler.step`` and ``DDIMScheduler.step``
(``clip_sample=False``); the tests check it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from aigc_course.diffusion.schedule import NoiseSchedule
from aigc_course.runtime import randn

# callback(t, xt, eps): the step t, the sample x_t before the step and the predicted noise
StepCallback = Callable[[int, torch.Tensor, torch.Tensor], None]
# replace(t, xt) -> xt: edits the sample before each step (t = -1: the final sample), chapter 6.4
ReplaceHook = Callable[[int, torch.Tensor], torch.Tensor]


def ddpm_step(schedule: NoiseSchedule, xt: torch.Tensor, t: int, eps: torch.Tensor,
              noise: torch.Tensor | None = None, clip_x0: bool = False) -> torch.Tensor:
    """One ancestral step x_t -> x_{t-1} (Ho et al., 2020, algorithm 2, line 4).

    ``clip_x0`` clips the predicted x0 to [-1, 1], the data range."""
    # 1. predict x0 from eps by inverting the forward formula (eq. 4):
    #    x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
    x0 = schedule.predict_x0(xt, t, eps)
    if clip_x0:
        x0 = x0.clamp(-1, 1)
    # 2. the mean of the posterior q(x_{t-1} | x_t, x0_hat) (eq. 7)
    mean = schedule.posterior_mean(x0, xt, t)
    # 3. the last step returns the mean: no noise is added at t = 0
    if t == 0:
        return mean
    # 4. add noise of the posterior variance beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t
    noise = torch.randn_like(xt) if noise is None else noise
    var = schedule.posterior_variance[t].clamp(min=1e-20)
    return mean + var.sqrt().to(xt) * noise


def ddim_step(schedule: NoiseSchedule, xt: torch.Tensor, t: int, prev_t: int, eps: torch.Tensor,
              clip_x0: bool = False, eta: float = 0.0, noise: torch.Tensor | None = None) -> torch.Tensor:
    """One DDIM step from step t to an earlier step prev_t (-1 = the end).

    ``eta`` > 0 adds fresh ``noise``; eta = 1 with every step visited is DDPM's ancestral step
    (tested). ``clip_x0`` clips x0_hat to [-1, 1] and re-derives eps from the clipped x0_hat, so
    that the two terms describe the same point (GLIDE's choice; diffusers'
    ``use_clipped_model_output``). Keeping the unclipped eps next to a clipped x0_hat adds an
    error at every step: measured on the course's CPU-trained pixel models, it made 50 steps
    worse than 10."""
    if not -1 <= prev_t < t:
        raise ValueError(f"prev_t must satisfy -1 <= prev_t < t, got t={t}, prev_t={prev_t}.")
    if eta < 0:
        raise ValueError(f"eta must be >= 0 (0: deterministic DDIM, 1: DDPM-like noise), got {eta}.")
    if eta > 0 and noise is None:
        raise ValueError("eta > 0 adds fresh noise: pass noise=torch.randn_like(xt).")
    abar = schedule.alphas_cumprod[t].to(xt)
    # 1. the "predicted x0" of eq. 12: x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)
    x0 = schedule.predict_x0(xt, t, eps)
    if clip_x0:
        x0 = x0.clamp(-1, 1)
        eps = (xt - abar.sqrt() * x0) / (1 - abar).sqrt()
    abar_prev = (schedule.alphas_cumprod[prev_t] if prev_t >= 0 else torch.tensor(1.0)).to(xt)
    # 2. eta = 0: x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev) eps (eq. 12 with sigma = 0)
    if eta == 0:
        return abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * eps
    # 3. eta > 0 (eq. 16): sigma = eta sqrt((1 - abar_prev) / (1 - abar) (1 - abar / abar_prev));
    #    the eps term shrinks to sqrt(1 - abar_prev - sigma^2) so the marginals stay the same
    sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()
    return abar_prev.sqrt() * x0 + (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * eps + sigma * noise


def ddim_timesteps(num_train: int, num_steps: int) -> list[int]:
    """The steps DDIM visits, from the noisiest down: 0, k, 2k, ... reversed (k = T // steps),
    diffusers' "leading" spacing."""
    if not 1 <= num_steps <= num_train:
        raise ValueError(f"num_steps must be in 1 .. {num_train}, got {num_steps}.")
    k = num_train // num_steps
    return [i * k for i in range(num_steps)][::-1]


def _start(shape, x, generator, device) -> torch.Tensor:
    if x is None:
        return randn(shape, generator, device)
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"The starting noise x has shape {tuple(x.shape)}, expected {tuple(shape)}.")
    return x.to(device)


@torch.no_grad()
def sample_ddpm(eps_model, schedule: NoiseSchedule, shape: tuple[int, ...], generator: torch.Generator | None = None,
                device: str | torch.device = "cpu", clip_x0: bool = True, x: torch.Tensor | None = None,
                callback: StepCallback | None = None, **model_kwargs) -> torch.Tensor:
    """Ancestral sampling through all T steps from x_{T-1} ~ N(0, I) (or the noise ``x``).

    Noise is drawn from ``generator`` on its own device (the same seed gives the same samples on
    any ``device``); one draw per step, the last one unused, so that the path does not depend on
    whether a callback is given."""
    x = _start(shape, x, generator, device)
    for t in range(schedule.num_steps - 1, -1, -1):
        eps = eps_model(x, torch.full((shape[0],), t, device=device), **model_kwargs)
        if callback is not None:
            callback(t, x, eps)
        noise = randn(shape, generator, device)
        x = ddpm_step(schedule, x, t, eps, noise=noise, clip_x0=clip_x0)
    return x


@torch.no_grad()
def sample_ddim(eps_model, schedule: NoiseSchedule, shape: tuple[int, ...], num_steps: int = 50,
                generator: torch.Generator | None = None, device: str | torch.device = "cpu",
                clip_x0: bool = True, x: torch.Tensor | None = None, eta: float = 0.0,
                callback: StepCallback | None = None, skip_steps: int = 0,
                replace: ReplaceHook | None = None, **model_kwargs) -> torch.Tensor:
    """DDIM sampling in ``num_steps`` steps. With ``eta = 0`` (the default) it is deterministic:
    the same starting noise ``x`` always gives the same image; ``eta > 0`` draws fresh noise at
    every step from ``generator`` (chapter 5.9 measures what it changes).

    Two hooks serve the editing samplers of chapter 6.4 (:mod:`aigc_course.diffusion.editing`):
    ``skip_steps`` starts the run at the (skip_steps + 1)-th step of the schedule, with ``x`` a
    sample at that step (SDEdit); ``replace(t, x_t) -> x_t`` is applied before every network call
    and, with t = -1, to the final sample (RePaint puts the known pixels back)."""
    x = _start(shape, x, generator, device)
    steps = ddim_timesteps(schedule.num_steps, num_steps)
    if not 0 <= skip_steps <= len(steps):
        raise ValueError(f"skip_steps must be in 0 .. {len(steps)}, got {skip_steps}.")
    steps = steps[skip_steps:]
    for i, t in enumerate(steps):
        prev_t = steps[i + 1] if i + 1 < len(steps) else -1
        if replace is not None:
            x = replace(t, x)
        eps = eps_model(x, torch.full((shape[0],), t, device=device), **model_kwargs)
        if callback is not None:
            callback(t, x, eps)
        noise = randn(x.shape, generator, device) if eta > 0 else None
        x = ddim_step(schedule, x, t, prev_t, eps, clip_x0=clip_x0, eta=eta, noise=noise)
    return x if replace is None else replace(-1, x)


def guided_eps(model, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None, scale: float = 1.0,
               cond: torch.Tensor | None = None, null_cond: torch.Tensor | None = None) -> torch.Tensor:
    """Classifier-free guidance: eps_uncond + scale (eps_cond - eps_uncond), in one batched call.

    ``model`` is a conditional U-Net (:class:`aigc_course.models.UNet`). The condition is a class
    label ``y`` (its "no condition" is ``model.null_label``) or a vector ``cond`` with its "no
    condition" vector ``null_cond`` (e.g. the embedding of the empty prompt, shape (D,) or
    (B, D)). scale 0 is the unconditional model, 1 the conditional one, > 1 pushes samples
    towards the condition (sharper, less diverse)."""
    if (y is None) == (cond is None):
        raise ValueError("guided_eps needs exactly one condition: a class label y or a vector cond.")
    xx, tt = torch.cat([x, x]), torch.cat([t, t])  # (2B, ...): conditional half, then unconditional
    if y is not None:
        both = model(xx, tt, y=torch.cat([y, model.null_label(len(y), y.device)]))
    else:
        if null_cond is None:
            raise ValueError("Vector guidance needs null_cond, the embedding of 'no condition' (the empty prompt).")
        both = model(xx, tt, cond=torch.cat([cond, null_cond.expand_as(cond)]))
    eps_cond, eps_uncond = both.chunk(2)
    return eps_uncond + scale * (eps_cond - eps_uncond)
