"""Shared training loop of the diffusion recipes (``ddpm_mnist``, ``txt2img_mnist``, ...).

The network is trained with the epsilon loss (part 4) under AdamW with warm-up and cosine decay;
an exponential moving average (EMA) of the weights is kept and is what gets shipped, as in
Ho et al. (2020). ``cond_fn(labels, generator)`` turns a batch of digit labels into the keyword
arguments of the network (a class label, a text embedding, ...), or is None for an unconditional
model. The held-out metric is the epsilon loss on the test set at fixed timesteps and noise.

Every random draw of a step (the rows, the conditioning, the timesteps t and the noise eps) is
made by the batch function :class:`DiffusionBatches` from one seeded generator, in that order, so
the batch carries them: under DDP (chapter 5.15) each rank trains on its shard of the same global
batch, two processes equal one with the global batch, and a resumed run continues the stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from aigc_course.diffusion import NoiseSchedule, ScheduleConfig, eps_loss
from aigc_course.recipes.cards import run_card, train_command
from aigc_course.runtime import randint, randn
from aigc_course.train import EMA, TrainConfig, fit, random_batches


@dataclass
class DiffusionRecipe:
    steps: int
    batch_size: int = 128
    lr: float = 5e-4
    warmup: int = 200
    ema_decay: float = 0.999
    schedule: str = "linear"
    num_train_steps: int = 1000


@torch.no_grad()
def heldout_eps_loss(model, schedule: NoiseSchedule, x0: torch.Tensor, cond_kwargs: dict | None = None,
                     batch_size: int = 500, seed: int = 1234) -> float:
    """Mean epsilon loss on ``x0`` with timesteps and noise drawn from a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    total, n = 0.0, 0
    for i in range(0, len(x0), batch_size):
        xb = x0[i:i + batch_size].to(device)
        kw = {k: v[i:i + batch_size].to(device) for k, v in (cond_kwargs or {}).items()}
        total += eps_loss(model, schedule, xb, g, **kw).item() * len(xb)
        n += len(xb)
    return total / n


class DiffusionBatches:
    """``step -> (x0, t, eps, cond_kwargs)``: a random batch of rows with its conditioning, timesteps
    and noise, all drawn from ``generator`` (the draws :func:`eps_loss` would make, in its order)."""

    def __init__(self, x_train, y_train, batch_size: int, num_steps: int, cond_fn: Callable | None,
                 generator: torch.Generator):
        self.rows = random_batches(x_train, y_train, batch_size=batch_size, generator=generator)
        self.num_steps, self.cond_fn, self.generator = num_steps, cond_fn, generator

    def __call__(self, step: int):
        x0, y = self.rows(step)
        g = self.generator
        kw = self.cond_fn(y, g) if self.cond_fn is not None else {}
        t = randint(self.num_steps, (x0.shape[0],), g, x0.device)  # (B,)
        eps = randn(x0.shape, g, x0.device).to(x0.dtype)  # (B, C, H, W)
        return x0, t, eps, kw

    def state_dict(self) -> dict:
        return self.rows.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.rows.load_state_dict(state)


def train_diffusion(model: torch.nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, recipe: DiffusionRecipe,
                    cond_fn: Callable | None = None, seed: int = 0, desc: str = "diffusion"):
    """Train ``model`` in place (then load its EMA weights into it); returns (history, schedule, seconds)."""
    schedule = NoiseSchedule(ScheduleConfig(num_steps=recipe.num_train_steps, kind=recipe.schedule))
    g = torch.Generator().manual_seed(seed)
    ema = EMA(model, recipe.ema_decay)

    def loss_fn(m, batch):
        # eps_loss with its draws made in the batch: mean of (eps - eps_theta(x_t, t))^2
        x0, t, eps, kw = batch
        return torch.mean((eps - m(schedule.q_sample(x0, t, eps), t, **kw)) ** 2)

    cfg = TrainConfig(steps=recipe.steps, lr=recipe.lr, warmup=min(recipe.warmup, recipe.steps // 10),
                      decay=True, lr_min=recipe.lr / 10, desc=desc)
    t0 = time.perf_counter()
    batches = DiffusionBatches(x_train, y_train, recipe.batch_size, schedule.num_steps, cond_fn, g)
    history = fit(model, loss_fn, batches, cfg, on_step=lambda step: ema.update(model))
    seconds = time.perf_counter() - t0
    ema.copy_to(model)
    model.eval()
    return history, schedule, seconds


def base_card(name: str, arch: str, model, recipe: DiffusionRecipe, recipe_name: str, seed: int, fast: bool,
              seconds: float, device, data: dict) -> dict:
    return {
        "name": name,
        "arch": arch,
        "config": model.config_dict(),
        "train_command": train_command(name, recipe_name, fast, seed),
        "data": data,
        "recipe": {"name": recipe_name, **asdict(recipe), "seed": seed, "ema": "shipped weights are the bias-corrected EMA (aigc_course.train.EMA)"},
        **run_card(model, seconds, device),
    }
