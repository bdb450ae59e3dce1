"""Denoising diffusion: the schedule, the samplers and the text-to-image pipeline.

Used by chapters 2.3, 3.7, 3.8, 4.5, 5.9-5.13 and 6.4. The schedule is an object of its own, apart
from any network; a sampler needs only ``eps_model(x_t, t) -> predicted noise``.

* :mod:`~aigc_course.diffusion.schedule`: ``NoiseSchedule`` (betas, abar_t, the forward process
  and the posterior) and the training loss ``eps_loss``;
* :mod:`~aigc_course.diffusion.samplers`: ``ddpm_step``, ``ddim_step`` and the loops
  ``sample_ddpm`` / ``sample_ddim`` (with a per-step callback, and for editing a start part-way
  down the schedule and a hook that replaces known pixels), ``guided_eps``;
* :mod:`~aigc_course.diffusion.editing`: image editing with those samplers (chapter 6.4): SDEdit,
  RePaint inpainting, DDIM inversion and slerp;
* :mod:`~aigc_course.diffusion.pipeline`: ``TextToImage``, Stable Diffusion's four stages at
  MNIST size (chapters 3.8, 5.10, 5.11);
* :mod:`~aigc_course.diffusion.stable_diffusion`: diffusers' Stable Diffusion by hand (chapter
  3.8): ``tiny_stable_diffusion`` (a randomly initialised pipeline built offline),
  ``generate_by_hand`` (the pipeline's loop written out; device, dtype and the generator's device
  come from its arguments) and ``run_real_stable_diffusion`` (the released weights on a GPU).
  It needs diffusers and transformers, so it is imported on its own, not re-exported here.
"""

from aigc_course.diffusion.samplers import (
    StepCallback,
    ddim_step,
    ddim_timesteps,
    ddpm_step,
    guided_eps,
    sample_ddim,
    sample_ddpm,
)
from aigc_course.diffusion.schedule import NoiseSchedule, ScheduleConfig, eps_loss

__all__ = ["NoiseSchedule", "ScheduleConfig", "StepCallback", "ddim_step", "ddim_timesteps", "ddpm_step",
           "eps_loss", "guided_eps", "sample_ddim", "sample_ddpm"]
