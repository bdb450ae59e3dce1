"""Editing images with a trained diffusion model: SDEdit, RePaint, DDIM inversion, slerp (chapter 6.4).

None of these needs a new network: each reuses a model trained only to denoise, and the DDIM loop
of :func:`aigc_course.diffusion.samplers.sample_ddim` through its two hooks (``skip_steps``, to
start part-way down the schedule, and ``replace``, to edit the sample before every step).

* :func:`sdedit` (Meng et al., 2022): noise the input to the step that the ``strength`` s picks,
  then denoise. s = 0 returns the input, s = 1 starts from (almost) pure noise. The step count
  follows diffusers' ``StableDiffusionImg2ImgPipeline``: int(num_steps * s) of the num_steps
  DDIM steps are run, the last ones.
* :func:`repaint` (Lugmayr et al., 2022): fill the pixels where ``mask`` is 1. Before every step
  the known pixels are replaced by the original noised to that step, q(x_t | x0); with
  ``resample`` = U > 1 each step is repeated U times, jumping back from x_{t'} to x_t with
  q(x_t | x_{t'}) in between, so that the generated part can "harmonise" with the known part.
  The mask convention is diffusers': 1 (white) = regenerate, 0 = keep.
* :func:`ddim_invert`: DDIM run backwards, x0 -> x_T (Song et al., 2021, sec. 4.3; the
  deterministic ODE can be integrated in either direction). :func:`sample_ddim` from the result
  (with ``clip_x0=False``) gives the input back, up to the discretisation error.
* :func:`slerp`: spherical interpolation of two noise tensors, which keeps their norm (a
  straight line between two Gaussian samples passes through improbably short vectors).
"""

from __future__ import annotations

import torch

from aigc_course.diffusion.samplers import ddim_step, ddim_timesteps, sample_ddim
from aigc_course.diffusion.schedule import NoiseSchedule
from aigc_course.runtime import randn


def steps_for_strength(strength: float, num_steps: int) -> int:
    """How many of ``num_steps`` DDIM steps an edit of ``strength`` runs: int(num_steps * strength),
    the rule of diffusers' img2img pipeline (``get_timesteps``)."""
    if not isinstance(strength, (int, float)) or not 0.0 <= float(strength) <= 1.0:
        raise ValueError(f"strength must be a number in [0, 1] (0: keep the input, 1: start from noise), "
                         f"got {strength!r}.")
    return min(int(num_steps * float(strength)), num_steps)


def start_step(schedule: NoiseSchedule, strength: float, num_steps: int) -> int | None:
    """The timestep t_0 to which SDEdit noises its input (None for strength 0: nothing is run)."""
    n = steps_for_strength(strength, num_steps)
    return ddim_timesteps(schedule.num_steps, num_steps)[num_steps - n] if n > 0 else None


@torch.no_grad()
def sdedit(eps_model, schedule: NoiseSchedule, x0: torch.Tensor, strength: float, num_steps: int = 10,
           generator: torch.Generator | None = None, clip_x0: bool = True, eta: float = 0.0,
           **model_kwargs) -> torch.Tensor:
    """SDEdit: a variation of each image in ``x0`` (B, C, H, W), in [-1, 1].

    1. n = int(num_steps * strength) steps will run, from t_0 = the (num_steps - n + 1)-th step;
    2. x_{t_0} = sqrt(abar_{t_0}) x0 + sqrt(1 - abar_{t_0}) eps, eps drawn from ``generator``;
    3. DDIM from t_0 down to the clean image (``sample_ddim`` with ``skip_steps``).
    ``model_kwargs`` go to ``eps_model`` (e.g. a condition); for a prompt-guided edit pass a
    guided ``eps_model`` (:func:`aigc_course.diffusion.samplers.guided_eps`)."""
    n = steps_for_strength(strength, num_steps)
    if n == 0:
        return x0.clone()
    t0 = start_step(schedule, strength, num_steps)
    noise = randn(x0.shape, generator, x0.device).to(x0.dtype)
    xt = schedule.q_sample(x0, torch.tensor(t0), noise)
    return sample_ddim(eps_model, schedule, tuple(x0.shape), num_steps, generator=generator, device=x0.device,
                       clip_x0=clip_x0, x=xt, eta=eta, skip_steps=num_steps - n, **model_kwargs)


def check_mask(mask: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """The mask as a float tensor of x0's dtype, after checking that it is binary and fits x0.

    ``mask``: (B, 1, H, W), (1, 1, H, W), (1, H, W) or (H, W), 1 where pixels are regenerated."""
    if not torch.is_tensor(mask):
        raise ValueError(f"mask must be a tensor of 0s and 1s (1 = regenerate), got {type(mask).__name__}.")
    m = mask.to(x0.device, x0.dtype)
    while m.dim() < x0.dim():
        m = m[None]
    ok = m.dim() == x0.dim() and m.shape[-2:] == x0.shape[-2:] and m.shape[0] in (1, x0.shape[0]) \
        and m.shape[1] in (1, x0.shape[1])
    if not ok:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit images of shape {tuple(x0.shape)}: "
                         f"give (B or 1, 1 or C, H, W) with the images' H x W.")
    if not torch.all((m == 0) | (m == 1)):
        raise ValueError("mask must hold only 0 (keep) and 1 (regenerate); threshold a soft mask first, "
                         "e.g. (mask > 0.5).float().")
    return m


def q_jump(schedule: NoiseSchedule, x_s: torch.Tensor, s: int, t: int, noise: torch.Tensor) -> torch.Tensor:
    """Noise x_s forward to a later step t > s with q(x_t | x_s) (s = -1: the clean image):
    x_t = sqrt(abar_t / abar_s) x_s + sqrt(1 - abar_t / abar_s) noise (RePaint's jump back)."""
    if not -1 <= s < t < schedule.num_steps:
        raise ValueError(f"q_jump goes forward in time: need -1 <= s < t < {schedule.num_steps}, got s={s}, t={t}.")
    abar_s = schedule.alphas_cumprod[s] if s >= 0 else torch.tensor(1.0)
    ratio = (schedule.alphas_cumprod[t] / abar_s).to(x_s)
    return ratio.sqrt() * x_s + (1 - ratio).sqrt() * noise


@torch.no_grad()
def repaint(eps_model, schedule: NoiseSchedule, x0: torch.Tensor, mask: torch.Tensor, num_steps: int = 10,
            resample: int = 1, generator: torch.Generator | None = None, clip_x0: bool = True,
            eta: float = 0.0, **model_kwargs) -> torch.Tensor:
    """Inpaint the pixels of ``x0`` (B, C, H, W) where ``mask`` is 1; the others come back exactly.

    Before each step t (``sample_ddim``'s ``replace`` hook):
    1. known part: x_t^known = q_sample(x0, t), fresh noise from ``generator``;
    2. x_t = (1 - m) x_t^known + m x_t;
    3. with ``resample`` = U > 1, U - 1 times: one DDIM step to t', jump back with q(x_t | x_{t'}),
       and step 2 again. At the end (t = -1) the known pixels are x0 itself."""
    if int(resample) != resample or resample < 1:
        raise ValueError(f"resample must be an integer >= 1 (1: no resampling), got {resample!r}.")
    m = check_mask(mask, x0)
    steps = ddim_timesteps(schedule.num_steps, num_steps)
    prev = dict(zip(steps, steps[1:] + [-1]))  # the step after each t (-1: the clean image)
    B = x0.shape[0]

    def paste(t: int, x: torch.Tensor) -> torch.Tensor:
        known = x0 if t < 0 else schedule.q_sample(x0, torch.tensor(t), randn(x0.shape, generator, x0.device).to(x0))
        return (1 - m) * known + m * x

    def replace(t: int, x: torch.Tensor) -> torch.Tensor:
        x = paste(t, x)
        for _ in range(int(resample) - 1 if t >= 0 else 0):
            eps = eps_model(x, torch.full((B,), t, device=x0.device), **model_kwargs)
            noise = randn(x.shape, generator, x0.device) if eta > 0 else None
            x_prev = ddim_step(schedule, x, t, prev[t], eps, clip_x0=clip_x0, eta=eta, noise=noise)
            x = paste(t, q_jump(schedule, x_prev, prev[t], t, randn(x.shape, generator, x0.device).to(x)))
        return x

    x_T = randn(x0.shape, generator, x0.device).to(x0.dtype)
    return sample_ddim(eps_model, schedule, tuple(x0.shape), num_steps, generator=generator, device=x0.device,
                       clip_x0=clip_x0, x=x_T, eta=eta, replace=replace, **model_kwargs)


def ddim_inversion_step(schedule: NoiseSchedule, x_s: torch.Tensor, s: int, t: int, eps: torch.Tensor) -> torch.Tensor:
    """One DDIM step run upwards, x_s -> x_t with t > s (s = -1: the clean image).

    The DDIM update (eq. 12 with sigma = 0) read from s to t: x0_hat from x_s and eps, then
    x_t = sqrt(abar_t) x0_hat + sqrt(1 - abar_t) eps. ``eps`` is predicted at (x_s, t), as in
    diffusers' ``DDIMInverseScheduler``: the only point known is x_s, the step is about t."""
    if not -1 <= s < t < schedule.num_steps:
        raise ValueError(f"inversion goes up: need -1 <= s < t < {schedule.num_steps}, got s={s}, t={t}.")
    abar_s = (schedule.alphas_cumprod[s] if s >= 0 else torch.tensor(1.0)).to(x_s)
    abar_t = schedule.alphas_cumprod[t].to(x_s)
    x0 = (x_s - (1 - abar_s).sqrt() * eps) / abar_s.sqrt()
    return abar_t.sqrt() * x0 + (1 - abar_t).sqrt() * eps


@torch.no_grad()
def ddim_invert(eps_model, schedule: NoiseSchedule, x0: torch.Tensor, num_steps: int = 10,
                **model_kwargs) -> torch.Tensor:
    """The noise x_T from which deterministic DDIM (eta = 0, ``clip_x0=False``, same ``num_steps``)
    returns approximately ``x0``: the DDIM steps visited in reverse order, -1 -> 0 -> k -> ... ."""
    s = -1
    x = x0
    for t in ddim_timesteps(schedule.num_steps, num_steps)[::-1]:
        eps = eps_model(x, torch.full((x0.shape[0],), t, device=x0.device), **model_kwargs)
        x, s = ddim_inversion_step(schedule, x, s, t, eps), t
    return x


def slerp(z0: torch.Tensor, z1: torch.Tensor, alpha: float) -> torch.Tensor:
    """Spherical interpolation between z0 and z1 (B, ...), one angle per row:
    sin((1 - a) w) / sin(w) z0 + sin(a w) / sin(w) z1, with cos(w) = <z0, z1> / (|z0| |z1|).
    Falls back to the straight line when the two rows are (almost) parallel."""
    if z0.shape != z1.shape:
        raise ValueError(f"slerp needs two tensors of one shape, got {tuple(z0.shape)} and {tuple(z1.shape)}.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    a, b = z0.flatten(1), z1.flatten(1)  # (B, D)
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp(min=1e-12)
    w = torch.arccos(cos.clamp(-1, 1))[:, None]  # (B, 1)
    parallel = w < 1e-4
    sin_w = torch.where(parallel, torch.ones_like(w), torch.sin(w))
    c0 = torch.where(parallel, torch.full_like(w, 1 - alpha), torch.sin((1 - alpha) * w) / sin_w)
    c1 = torch.where(parallel, torch.full_like(w, alpha), torch.sin(alpha * w) / sin_w)
    return (c0 * a + c1 * b).view_as(z0)
