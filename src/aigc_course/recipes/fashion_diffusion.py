"""Recipe ``fashion_diffusion``: a class-conditional pixel DDPM on Fashion-MNIST (chapter 6.1).

The ad creatives of chapter 6.1 ("Marketing and advertising") are product images drawn from this
model: the brief names a product class (one of ``FASHION_CLASSES``), the sampler runs DDIM in a few
steps with classifier-free guidance (Ho & Salimans, 2022) on the class label.

Data: the 60,000 Fashion-MNIST training images scaled to [-1, 1]; held out: 2,000 test images.
Model: the course U-Net (base 16, time embedding 64, 28 -> 14 -> 7, attention at 7x7, 0.19 M
parameters) with a label embedding of 11 rows (the ten classes and the "null" label). With
probability ``P_UNCOND`` the label of a training image is replaced by the null label, so that the
same network also predicts the unconditional noise that guidance needs. Linear schedule, T = 1000,
epsilon loss, AdamW with warm-up and cosine decay; the bias-corrected EMA of the weights is shipped
in float16 (the metrics are measured on exactly the rounded weights).

* ``cpu`` (the shipped weights): 1,200 steps of batch 32 (0.64 epochs), lr 1e-3, EMA decay 0.995,
  one CPU thread: a deliberately short run, so its samples are rough and some miss their class
  (which gives the chapter's filter something to reject). Its card records the time, the held-out eps loss and the on-target rate.
* ``gpu`` (the full recipe; not run): base 32, 30,000 steps of batch 128, lr 3e-4.

Metric: the on-target rate, the fraction of 500 guided samples (50 per class, DDIM 20 steps,
guidance 2) that the course classifier ``fashion_cnn`` assigns to the requested class (measured
only when ``fashion_cnn`` is available).
"""

from __future__ import annotations

import copy

import torch

from aigc_course.data import image_tensors
from aigc_course.diffusion import NoiseSchedule, ScheduleConfig, guided_eps, sample_ddim
from aigc_course.models.unet import UNet, UNetConfig
from aigc_course.pretrained import CheckpointError, load_pretrained, save_pretrained
from aigc_course.recipes.cards import choose_recipe, data_card
from aigc_course.recipes.diffusion_training import (
    DiffusionRecipe,
    base_card,
    heldout_eps_loss,
    train_diffusion,
)
from aigc_course.runtime import get_device, set_seed

NAME = "fashion_diffusion"
P_UNCOND = 0.1
RECIPES = {
    "cpu": (UNetConfig(base=16, time_dim=64, num_classes=10),
            DiffusionRecipe(steps=1200, batch_size=32, lr=1e-3, warmup=100, ema_decay=0.995)),
    "gpu": (UNetConfig(base=32, num_classes=10, dropout=0.1),
            DiffusionRecipe(steps=30_000, batch_size=128, lr=3e-4, warmup=1000, ema_decay=0.9995)),
}


def schedule_of(card: dict) -> NoiseSchedule:
    """The noise schedule the weights of ``card`` were trained with."""
    return NoiseSchedule(ScheduleConfig(num_steps=card["schedule"]["num_steps"], kind=card["schedule"]["kind"]))


@torch.no_grad()
def sample_products(model: UNet, schedule: NoiseSchedule, labels: torch.Tensor, guidance: float = 2.0,
                    num_steps: int = 20, generator: torch.Generator | None = None) -> torch.Tensor:
    """Images (B, 1, 28, 28) in [-1, 1] of the classes ``labels`` (B,): DDIM with classifier-free
    guidance eps = eps_uncond + guidance (eps_cond - eps_uncond)."""
    if model.config.num_classes is None:
        raise ValueError("sample_products needs a class-conditional UNet (UNetConfig.num_classes set).")
    device = next(model.parameters()).device
    labels = labels.to(device)

    def eps_model(xt, t):
        return guided_eps(model, xt, t, y=labels, scale=guidance)

    return sample_ddim(eps_model, schedule, (len(labels), 1, 28, 28), num_steps=num_steps, generator=generator,
                       device=device)


@torch.no_grad()
def on_target_rate(model: UNet, schedule: NoiseSchedule, classifier, per_class: int = 50, guidance: float = 2.0,
                   num_steps: int = 20, seed: int = 0) -> float:
    """Fraction of guided samples (every class, ``per_class`` each) classified as the requested class."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(10).repeat_interleave(per_class)
    hits = 0
    for i in range(0, len(labels), 100):
        y = labels[i:i + 100]
        x = sample_products(model, schedule, y, guidance, num_steps, generator=g)
        hits += (classifier(x).argmax(1).cpu() == y).sum().item()
    return hits / len(labels)


def train(out_dir=None, fast: bool = False, seed: int = 0, recipe: str = "cpu") -> dict:
    set_seed(seed)
    device = get_device()
    model_cfg, rec = choose_recipe(RECIPES, recipe)
    if fast:
        model_cfg, rec = UNetConfig(base=8, time_dim=32, num_classes=10), DiffusionRecipe(steps=10, batch_size=16,
                                                                                         warmup=0)
    x_train, y_train = image_tensors("fashion_mnist", "train", limit=512 if fast else None)
    x_test, y_test = image_tensors("fashion_mnist", "test", limit=64 if fast else 2000)
    null = model_cfg.num_classes

    def cond_fn(y: torch.Tensor, g: torch.Generator) -> dict:
        drop = torch.rand(len(y), generator=g) < P_UNCOND
        return {"y": torch.where(drop, torch.full_like(y, null), y)}

    model = UNet(model_cfg).to(device)
    history, schedule, seconds = train_diffusion(model, x_train, y_train, rec, cond_fn=cond_fn, seed=seed, desc=NAME)
    model = model.cpu().half().float().to(device).eval()  # measure exactly the shipped float16 weights
    card = base_card(NAME, "unet", model, rec, recipe, seed, fast, seconds, device,
                     data_card("fashion_mnist", split="train (60,000), scaled to [-1, 1]"))
    card["schedule"] = {"kind": rec.schedule, "num_steps": rec.num_train_steps}
    card["conditioning"] = {"p_uncond": P_UNCOND, "null": f"label {null}"}
    card["weights_dtype"] = "float16"
    card["metrics"] = {
        "test_eps_loss": round(heldout_eps_loss(model, schedule, x_test, {"y": y_test}), 5),
        "n_test": len(x_test),
        "final_train_loss": round(history.smoothed(100)[-1], 5),
    }
    try:
        classifier, _ = load_pretrained("fashion_cnn", device=device)
        per_class, steps = (2, 5) if fast else (50, 20)
        card["metrics"]["on_target_rate"] = round(on_target_rate(model, schedule, classifier, per_class, 2.0,
                                                                 steps), 4)
        card["metrics"]["on_target_setup"] = f"{10 * per_class} samples, DDIM {steps} steps, guidance 2, fashion_cnn"
    except CheckpointError:
        pass
    save_pretrained(copy.deepcopy(model).cpu().half(), NAME, card, out_dir)
    return card
