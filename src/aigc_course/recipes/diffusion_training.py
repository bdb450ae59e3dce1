"""Shared training loop of the diffusion recipes (``ddpm_mnist``, ``txt2img_mnist``, ...).

The network is trained with the epsilon loss (part 4) under AdamW with warm-up and cosine decay;
an exponential moving average (EMA) of the weights is kept and is what gets shipped, as in
Ho et al. (2020). ``cond_fn(labels, generator)`` turns a batch of digit labels into the keyword
arguments of the network (a class label, a text embedding, ...), or is None for an unconditional
model. The held-out metric is the epsilon loss on the test set at fixed timesteps and noise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from aigc_course.diffusion import NoiseSchedule, ScheduleConfig, eps_loss
from aigc_course.recipes.cards import run_card, train_command
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


def train_diffusion(model: torch.nn.Module, x_train: torch.Tensor, y_train: torch.Tensor, recipe: DiffusionRecipe,
                    cond_fn: Callable | None = None, seed: int = 0, desc: str = "diffusion"):
    """Train ``model`` in place (then load its EMA weights into it); returns (history, schedule, seconds)."""
    schedule = NoiseSchedule(ScheduleConfig(num_steps=recipe.num_train_steps, kind=recipe.schedule))
    g = torch.Generator().manual_seed(seed)
    ema = EMA(model, recipe.ema_decay)

    def loss_fn(m, batch):
        x0, y = batch
        kw = cond_fn(y, g) if cond_fn is not None else {}
        kw = {k: v.to(x0.device) for k, v in kw.items()}
        return eps_loss(m, schedule, x0, g, **kw)

    cfg = TrainConfig(steps=recipe.steps, lr=recipe.lr, warmup=min(recipe.warmup, recipe.steps // 10),
                      decay=True, lr_min=recipe.lr / 10, desc=desc)
    t0 = time.perf_counter()
    batches = random_batches(x_train, y_train, batch_size=recipe.batch_size, generator=g)
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
