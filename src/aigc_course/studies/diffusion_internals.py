"""Looking inside a diffusion model: forward strips, sampling trajectories, exact 1D denoisers.

Taught in chapters 3.7 (forward noising and reverse denoising), 4.5 (the mathematics of
diffusion) and 5.9 (DDPM and DDIM on MNIST). Everything here is built on
:mod:`aigc_course.diffusion`: the trajectories are the package samplers run with a callback.

* :func:`forward_strip` noises the same images to several timesteps with one shared eps;
* :func:`draw_noised` is the draw function of the timestep slider (one panel for one t);
* :func:`ddpm_trajectory` / :func:`ddim_trajectory` run the package samplers and keep
  x_t and the model's prediction of x0 at chosen steps (the "what does the network see" view);
* :func:`gaussian_eps` and :func:`mixture_eps` are the exact optimal noise predictions when the
  data are a 1D Gaussian or a Gaussian mixture, so that part 4 can check formulas without any
  training: eps*(x_t, t) = -sqrt(1 - abar_t) * grad log p_t(x_t) (Song et al., 2021; Vincent, 2011).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from aigc_course.diffusion import NoiseSchedule, ddim_timesteps, sample_ddim, sample_ddpm
from aigc_course.plotting import make_grid
from aigc_course.runtime import randn


def _check_steps(schedule: NoiseSchedule, ts: Sequence[int]) -> list[int]:
    ts = [int(t) for t in ts]
    bad = [t for t in ts if not 0 <= t < schedule.num_steps]
    if bad:
        raise ValueError(f"Timesteps {bad} are outside 0 .. {schedule.num_steps - 1}; pick steps of this schedule.")
    return ts


def snr(schedule: NoiseSchedule) -> torch.Tensor:
    """Signal-to-noise ratio abar_t / (1 - abar_t) of every step, shape (T,)."""
    return schedule.alphas_cumprod / (1 - schedule.alphas_cumprod)


def forward_strip(x0: torch.Tensor, schedule: NoiseSchedule, ts: Sequence[int],
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps for each t in ``ts``, with ONE eps shared by
    all t, so that only the amount of noise changes along the strip.

    x0: (B, C, H, W) in [-1, 1]. Returns (len(ts), B, C, H, W)."""
    ts = _check_steps(schedule, ts)
    eps = randn(x0.shape, generator).to(x0)  # drawn on the generator's device
    return torch.stack([schedule.q_sample(x0, torch.tensor(t), eps) for t in ts])


def draw_noised(ax, t: int, x0: torch.Tensor, schedule: NoiseSchedule, eps: torch.Tensor, nrow: int = 4) -> None:
    """Draw x_t of the images ``x0`` (B, C, H, W) for one timestep t with fixed noise ``eps``:
    the draw function of the timestep slider (``widgets.interactive_figure``)."""
    (t,) = _check_steps(schedule, [t])
    xt = schedule.q_sample(x0, torch.tensor(t), eps)
    ax.imshow(make_grid(xt.clamp(-1, 1), nrow=nrow), cmap="gray", vmin=0, vmax=1)
    abar = float(schedule.alphas_cumprod[t])
    ax.set_xlabel(f"abar_t = {abar:.3f}, SNR = {abar / (1 - abar):.3g}")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t = {t}")


@dataclass
class Trajectory:
    """What a sampler saw and predicted: ``steps[i]`` is the timestep at which ``xt[i]`` (the
    current sample, before the step) and ``x0_pred[i]`` (the model's guess of the clean image
    from it) were recorded. ``final`` is the sample the sampler returns."""

    steps: list[int] = field(default_factory=list)
    xt: list[torch.Tensor] = field(default_factory=list)
    x0_pred: list[torch.Tensor] = field(default_factory=list)
    final: torch.Tensor | None = None

    def grid(self, which: str = "xt", index: int = 0) -> torch.Tensor:
        """One image's path through the recorded steps: (len(steps), C, H, W)."""
        if which not in ("xt", "x0_pred"):
            raise ValueError(f"which must be 'xt' or 'x0_pred', got {which!r}.")
        return torch.stack([x[index] for x in getattr(self, which)])


def _recorder(traj: Trajectory, schedule: NoiseSchedule, record: set[int]):
    """A sampler callback that keeps x_t and the predicted x0 at the steps in ``record``."""
    def callback(t, x, eps):
        if t in record:
            traj.steps.append(t)
            traj.xt.append(x.clone())
            traj.x0_pred.append(schedule.predict_x0(x, t, eps).clamp(-1, 1))
    return callback


@torch.no_grad()
def ddpm_trajectory(eps_model, schedule: NoiseSchedule, x: torch.Tensor, record: Sequence[int],
                    generator: torch.Generator | None = None, clip_x0: bool = True) -> Trajectory:
    """:func:`diffusion.sample_ddpm` from the noise ``x`` (B, C, H, W), recording x_t and the
    predicted x0 at the steps in ``record``; the final sample is the sampler's."""
    traj = Trajectory()
    callback = _recorder(traj, schedule, set(_check_steps(schedule, record)))
    traj.final = sample_ddpm(eps_model, schedule, tuple(x.shape), generator=generator, device=x.device,
                             clip_x0=clip_x0, x=x, callback=callback)
    return traj


@torch.no_grad()
def ddim_trajectory(eps_model, schedule: NoiseSchedule, x: torch.Tensor, num_steps: int,
                    clip_x0: bool = True) -> Trajectory:
    """Deterministic :func:`diffusion.sample_ddim` from the noise ``x`` in ``num_steps`` steps,
    recording every visited step; the final sample is the sampler's."""
    traj = Trajectory()
    callback = _recorder(traj, schedule, set(ddim_timesteps(schedule.num_steps, num_steps)))
    traj.final = sample_ddim(eps_model, schedule, tuple(x.shape), num_steps, device=x.device, clip_x0=clip_x0,
                             x=x, callback=callback)
    return traj


def show_trajectory(traj: Trajectory, n_images: int = 4, axes=None):
    """Two rows per image: x_t (top) and the predicted x0 (bottom) at the recorded steps."""
    import matplotlib.pyplot as plt

    n_images = min(n_images, traj.xt[0].shape[0])
    if axes is None:
        _, axes = plt.subplots(2 * n_images, 1, figsize=(1.0 * len(traj.steps), 2.1 * n_images))
    for i in range(n_images):
        for row, which in enumerate(("xt", "x0_pred")):
            ax = axes[2 * i + row]
            ax.imshow(make_grid(traj.grid(which, i).clamp(-1, 1), nrow=len(traj.steps)), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_ylabel("x_t" if which == "xt" else "x0 pred", rotation=0, ha="right", va="center")
    axes[0].set_title("   ".join(f"t={t}" for t in traj.steps), fontsize=8)
    return axes


def _abar(schedule: NoiseSchedule, t, x: torch.Tensor) -> torch.Tensor:
    """abar_t broadcast to x's shape; t is a step or one step per row of x (B,)."""
    t = torch.as_tensor(t).long()
    if t.dim() > 1 or (t.dim() == 1 and (x.dim() == 0 or t.shape[0] != x.shape[0])):
        raise ValueError(f"t must be a step or have one entry per row of x, got t {tuple(t.shape)}, x {tuple(x.shape)}.")
    abar = schedule.alphas_cumprod[t].to(x)
    return abar.view(-1, *([1] * (x.dim() - 1))).expand_as(x) if t.dim() == 1 else abar.expand_as(x)


def gaussian_eps(x: torch.Tensor, t, schedule: NoiseSchedule, mu: float = 0.0, sigma: float = 1.0) -> torch.Tensor:
    """The optimal eps prediction E[eps | x_t] when the data are N(mu, sigma^2) (any shape of x).

    x_t ~ N(sqrt(abar) mu, abar sigma^2 + 1 - abar), whose score is -(x_t - sqrt(abar) mu) / var_t;
    the minimiser of the eps loss is eps* = -sqrt(1 - abar) * score."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}.")
    abar = _abar(schedule, t, x)
    var_t = abar * sigma**2 + 1 - abar
    score = -(x - abar.sqrt() * mu) / var_t
    return -(1 - abar).sqrt() * score


def mixture_log_prob_t(x: torch.Tensor, t, schedule: NoiseSchedule, means, stds, weights) -> torch.Tensor:
    """log p_t(x) of the noised 1D mixture sum_k w_k N(mu_k, s_k^2): each component becomes
    N(sqrt(abar) mu_k, abar s_k^2 + 1 - abar). x: any shape; returns the same shape."""
    means, stds, weights = (torch.as_tensor(v, dtype=x.dtype) for v in (means, stds, weights))
    if not (means.shape == stds.shape == weights.shape) or (weights < 0).any() or (stds <= 0).any():
        raise ValueError("means, stds and weights must have one entry per component, stds > 0, weights >= 0.")
    abar = _abar(schedule, t, x)[..., None]  # (..., 1) against (K,)
    var = abar * stds**2 + 1 - abar
    comp = -0.5 * (x[..., None] - abar.sqrt() * means) ** 2 / var - 0.5 * torch.log(2 * torch.pi * var)
    return torch.logsumexp(comp + torch.log(weights / weights.sum()), dim=-1)


def mixture_eps(x: torch.Tensor, t, schedule: NoiseSchedule, means, stds, weights) -> torch.Tensor:
    """The optimal eps prediction for 1D mixture data: -sqrt(1 - abar_t) * d/dx log p_t(x),
    the score computed by autograd of :func:`mixture_log_prob_t`."""
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        (score,) = torch.autograd.grad(mixture_log_prob_t(xg, t, schedule, means, stds, weights).sum(), xg)
    return -(1 - _abar(schedule, t, x)).sqrt() * score
