"""Recipe ``ddpm_mnist``: an unconditional DDPM on MNIST (part 5, "DDPM and DDIM").

Data: the 60,000 MNIST training digits scaled to [-1, 1]; held out: the 10,000 test digits.
Model: the course U-Net (base 24 channels, 28 -> 14 -> 7, attention at 7x7, 0.44 M parameters),
epsilon prediction, linear schedule with T = 1000 (Ho et al., 2020). AdamW with warm-up and
cosine decay; the EMA of the weights (decay 0.999) is shipped.

* ``cpu`` (the shipped weights): 12,000 steps of batch 128 (25.6 epochs), EMA decay 0.9995;
  80 minutes on an idle 2-core CPU (2 threads). Held-out eps loss 0.02272, against 0.02628 for
  the earlier 3,000-step recipe (``book/setup.md`` and chapter 5.9 give the sample quality).
* ``gpu`` (the full recipe; not yet run, so the shipped weights come from ``cpu``): base 64,
  40,000 steps of batch 128, lr 2e-4. Its target: a lower test eps loss than the ``cpu`` recipe's,
  and DDIM-50 samples whose FID is within 10% of DDPM-1000's (chapter 5.9; the ``cpu`` weights
  miss it).
"""

from __future__ import annotations

from aigc_course.data import image_tensors
from aigc_course.models.unet import UNet, UNetConfig
from aigc_course.pretrained import save_pretrained
from aigc_course.recipes.cards import choose_recipe, data_card
from aigc_course.recipes.diffusion_training import (
    DiffusionRecipe,
    base_card,
    heldout_eps_loss,
    train_diffusion,
)
from aigc_course.runtime import get_device, set_seed

NAME = "ddpm_mnist"
RECIPES = {
    "cpu": (UNetConfig(base=24), DiffusionRecipe(steps=12_000, lr=5e-4, ema_decay=0.9995)),
    "gpu": (UNetConfig(base=64, dropout=0.1), DiffusionRecipe(steps=40_000, lr=2e-4, warmup=1000, ema_decay=0.9995)),
}


def train(out_dir=None, fast: bool = False, seed: int = 0, recipe: str = "cpu") -> dict:
    set_seed(seed)
    device = get_device()
    model_cfg, rec = choose_recipe(RECIPES, recipe)
    if fast:
        model_cfg, rec = UNetConfig(base=8, time_dim=32), DiffusionRecipe(steps=10, batch_size=16, warmup=0)
    x_train, y_train = image_tensors("mnist", "train", limit=512 if fast else None)
    x_test, _ = image_tensors("mnist", "test", limit=64 if fast else 2000)
    model = UNet(model_cfg).to(device)
    history, schedule, seconds = train_diffusion(model, x_train, y_train, rec, seed=seed, desc=NAME)
    card = base_card(NAME, "unet", model, rec, recipe, seed, fast, seconds, device,
                     data_card("mnist", split="train (60,000), scaled to [-1, 1]"))
    card["schedule"] = {"kind": rec.schedule, "num_steps": rec.num_train_steps}
    card["metrics"] = {
        "test_eps_loss": round(heldout_eps_loss(model, schedule, x_test), 5),
        "n_test": len(x_test),
        "final_train_loss": round(history.smoothed(100)[-1], 5),
    }
    save_pretrained(model.cpu(), NAME, card, out_dir)
    return card
