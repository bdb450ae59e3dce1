"""The two-player training loop of GANs (chapters 2.3, 3.5 and 5.7).

:func:`aigc_course.train.fit` minimises one loss with one optimiser; a GAN is a game between a
generator and a discriminator with two losses and two optimisers (Goodfellow et al., 2014,
algorithm 1), so it has a loop of its own. It works for any model with ``generator``,
``discriminator``, ``d_loss(x_real)`` and ``g_loss(n)``: the GANs of
:mod:`aigc_course.models.gan` and the toy GAN of :mod:`aigc_course.models.toy2d`.

Under ``torchrun`` with W > 1 processes (chapter 5.15) both losses run inside one DDP wrapper
(``find_unused_parameters``: the discriminator's pass leaves the generator unused): each rank takes
its B / W rows of every global real batch and draws its own B / W codes z, and the gradients of
both players are averaged over the ranks. Only rank 0 shows progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from aigc_course.runtime import is_quiet
from aigc_course.train.distributed import (
    all_reduce_mean,
    data_parallel,
    dist_info,
    reseed_rank,
    shard_batch,
)
from aigc_course.train.loop import History, random_batches


class _GANLosses(nn.Module):
    """``forward("d", x_real) = model.d_loss(x_real)``, ``forward("g", n) = model.g_loss(n)``: one
    module for DDP to wrap, so that both players' gradients are all-reduced."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, which: str, arg):
        return self.model.d_loss(arg) if which == "d" else self.model.g_loss(arg)


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
    info = dist_info()
    d_loss, g_loss, n_fake = model.d_loss, model.g_loss, batch_size
    if info.distributed:
        if batch_size % info.world_size:
            raise ValueError(f"batch_size {batch_size} must be a multiple of the {info.world_size} processes.")
        reseed_rank(info.rank)  # each rank its own codes z
        net = data_parallel(_GANLosses(model), device, find_unused_parameters=True)
        d_loss, g_loss, n_fake = (lambda x: net("d", x)), (lambda n: net("g", n)), batch_size // info.world_size
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=lr if lr_d is None else lr_d, betas=betas)
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=lr, betas=betas)
    hist_d, hist_g = History(), History()
    quiet = (is_quiet() if progress is None else not progress) or not info.is_main
    t0 = time.perf_counter()
    model.train()
    bar = tqdm(range(steps), desc=desc, disable=quiet, leave=False)
    for step in bar:
        # 1. k discriminator steps: real batch vs detached fakes, only opt_d steps
        for _ in range(d_steps):
            real = get_batch(step)
            if info.distributed:
                real = shard_batch(real, info.rank, info.world_size)  # this rank's B / W rows
            loss_d = d_loss(real.to(device))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        # 2. one generator step through D; D's gradients from it are cleared before D's next step
        loss_g = g_loss(n_fake)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if not (torch.isfinite(loss_d) and torch.isfinite(loss_g)):
            raise FloatingPointError(f"GAN losses diverged at step {step}: lower the learning rate.")
        for h, v in ((hist_d, loss_d), (hist_g, loss_g)):
            h.steps.append(step)
            h.loss.append(all_reduce_mean(v).item())  # the mean over the ranks
        if on_step is not None:
            on_step(step)
        if not quiet and step % 20 == 0:
            bar.set_postfix(d=f"{hist_d.smoothed(20)[-1]:.3f}", g=f"{hist_g.smoothed(20)[-1]:.3f}")
    bar.close()
    model.eval()
    hist_d.seconds = hist_g.seconds = time.perf_counter() - t0
    return hist_d, hist_g
