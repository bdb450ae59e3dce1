"""The two-player training loop of GANs (chapters 2.3, 3.5 and 5.7).

:func:`aigc_course.train.fit` minimises one loss with one optimiser; a GAN is a game between a
generator and a discriminator with two losses and two optimisers (Goodfellow et al., 2014,
algorithm 1), so it has a loop of its own. It works for any model with ``generator``,
``discriminator``, ``d_loss(x_real)`` and ``g_loss(n)``: the GANs of
:mod:`aigc_course.models.gan` and the toy GAN of :mod:`aigc_course.models.toy2d`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from aigc_course.runtime import is_quiet
from aigc_course.train.loop import History, random_batches


def train_gan(model: nn.Module, data, steps: int = 1000, batch_size: int = 64, lr: float = 2e-4,
              lr_d: float | None = None, betas=(0.5, 0.999), d_steps: int = 1, seed: int = 0,
              progress: bool | None = None, desc: str = "gan",
              on_step: Callable[[int], None] | None = None) -> tuple[History, History]:
    """Alternate discriminator and generator updates; returns the (D, G) loss histories.

    ``data`` is a tensor (N, ...) sampled in seeded mini-batches (the indices use their own
    generator; z uses the global seed), or a function ``step -> batch``. ``lr_d`` defaults to
    ``lr``; Adam's beta1 = 0.5 follows DCGAN.
    """
    if steps <= 0 or batch_size <= 0 or d_steps <= 0:
        raise ValueError(f"steps, batch_size and d_steps must be positive, got {steps}, {batch_size}, {d_steps}.")
    device = next(model.parameters()).device
    if torch.is_tensor(data):
        get_batch = random_batches(data.to(device), batch_size=batch_size, generator=torch.Generator().manual_seed(seed))
    elif callable(data):
        get_batch = data
    else:
        raise ValueError(f"data must be a tensor (N, ...) or a function step -> batch, got {type(data).__name__}.")
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=lr if lr_d is None else lr_d, betas=betas)
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=lr, betas=betas)
    hist_d, hist_g = History(), History()
    quiet = is_quiet() if progress is None else not progress
    t0 = time.perf_counter()
    model.train()
    bar = tqdm(range(steps), desc=desc, disable=quiet, leave=False)
    for step in bar:
        # 1. k discriminator steps: real batch vs detached fakes, only opt_d steps
        for _ in range(d_steps):
            loss_d = model.d_loss(get_batch(step).to(device))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        # 2. one generator step through D; D's gradients from it are cleared before D's next step
        loss_g = model.g_loss(batch_size)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if not (torch.isfinite(loss_d) and torch.isfinite(loss_g)):
            raise FloatingPointError(f"GAN losses diverged at step {step}: lower the learning rate.")
        for h, v in ((hist_d, loss_d), (hist_g, loss_g)):
            h.steps.append(step)
            h.loss.append(v.item())
        if on_step is not None:
            on_step(step)
        if not quiet and step % 20 == 0:
            bar.set_postfix(d=f"{hist_d.smoothed(20)[-1]:.3f}", g=f"{hist_g.smoothed(20)[-1]:.3f}")
    bar.close()
    model.eval()
    hist_d.seconds = hist_g.seconds = time.perf_counter() - t0
    return hist_d, hist_g
