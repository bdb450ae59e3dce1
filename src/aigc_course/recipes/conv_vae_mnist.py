"""Recipe ``conv_vae_mnist``: a convolutional VAE on binarised MNIST (part 5, "A convolutional VAE").

Data: the 60,000 MNIST training digits, intensities in [0, 1], *dynamically binarised* (every
batch draws each pixel as Bernoulli(intensity), a fresh draw each time). Test: the 10,000 test
digits binarised once with a fixed seed (``TEST_SEED``), so every evaluation sees the same
binary images. Model: :class:`~aigc_course.models.conv_vae.ConvVAE` with a Bernoulli decoder, so
the negative ELBO is a bound on -log p(x) in nats per image; bits/dim = nats / (784 ln 2).

* ``cpu`` (the shipped weights): latent 16, channels 32 (0.22 M parameters), beta = 1,
  4,500 steps of batch 128 (9.6 epochs), AdamW lr 2e-3 with warm-up and cosine decay; about
  4 minutes on one CPU thread.
* ``gpu`` (the full recipe; not yet run, so the shipped weights come from ``cpu``): latent 32,
  channels 64, 60,000 steps of batch 128 (128 epochs) with lr 1e-3. Expect a test negative ELBO
  several nats lower than the cpu recipe's (published conv VAEs of this size reach about
  85-90 nats on dynamically binarised MNIST).

Card metrics on the 10,000 test images: negative ELBO (one posterior sample per image), its
reconstruction and KL terms, bits/dim, the IWAE bound with K = 64, and active units.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from aigc_course.data import image_tensors
from aigc_course.models.conv_vae import ConvVAE, ConvVAEConfig, binarize
from aigc_course.models.gaussian import active_units
from aigc_course.pretrained import save_pretrained
from aigc_course.recipes.cards import choose_recipe, data_card, run_card, train_command
from aigc_course.runtime import get_device, set_seed
from aigc_course.train import TrainConfig, fit, random_batches

NAME = "conv_vae_mnist"
TEST_SEED = 1234  # the fixed binarisation of the test set


@dataclass
class VAERecipe:
    latent_dim: int = 16
    channels: int = 32
    beta: float = 1.0
    steps: int = 4500
    batch_size: int = 128
    lr: float = 2e-3
    warmup: int = 100
    iwae_k: int = 64


RECIPES = {
    "cpu": VAERecipe(),
    "gpu": VAERecipe(latent_dim=32, channels=64, steps=60_000, lr=1e-3, warmup=1000, iwae_k=1000),
}


def binarized_test_set(limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The MNIST test digits binarised once with ``TEST_SEED`` (N, 1, 28, 28) in {0, 1}, and labels."""
    x, y = image_tensors("mnist", "test", scale="[0, 1]", limit=limit)
    return binarize(x, torch.Generator().manual_seed(TEST_SEED)), y


@torch.no_grad()
def evaluate_vae(model: ConvVAE, x: torch.Tensor, iwae_k: int = 64, batch_size: int = 500,
                 seed: int = 0) -> dict:
    """Test metrics in nats per image (one posterior sample for the ELBO terms; K samples for IWAE)."""
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    sums = {"rec": 0.0, "kl": 0.0, "neg_elbo": 0.0, "iwae": 0.0}
    mus = []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].to(model.device)
        out = model.loss(xb, generator=g)
        for k in ("rec", "kl", "neg_elbo"):
            sums[k] += float(out[k]) * len(xb)
        if iwae_k:
            sums["iwae"] += float(model.iwae_nll(xb, k=iwae_k, generator=g).sum())
        mus.append(model.encode(xb)[0].cpu())
    model.train(was_training)
    n, D = len(x), x[0].numel()
    m = {k: v / n for k, v in sums.items()}
    result = {"neg_elbo_nats": m["neg_elbo"], "rec_nats": m["rec"], "kl_nats": m["kl"],
              "bits_per_dim": m["neg_elbo"] / (D * math.log(2)),
              "active_units": active_units(torch.cat(mus))[0]}
    if iwae_k:
        result[f"iwae_k{iwae_k}_nats"] = m["iwae"]
    return result


def train_vae(model: ConvVAE, x_train: torch.Tensor, rec: VAERecipe, seed: int = 0, desc: str = NAME):
    """Train on dynamically binarised ``x_train`` (intensities in [0, 1]); returns the History."""
    g = torch.Generator().manual_seed(seed)

    sample = random_batches(x_train, batch_size=rec.batch_size, generator=g)

    def get_batch(step):
        return binarize(sample(step), generator=g)  # a fresh binarisation every time

    cfg = TrainConfig(steps=rec.steps, lr=rec.lr, warmup=rec.warmup, decay=True, desc=desc)
    return fit(model, lambda m, xb: m.loss(xb), get_batch, cfg)


def train(out_dir=None, fast: bool = False, seed: int = 0, recipe: str = "cpu") -> dict:
    set_seed(seed)
    device = get_device()
    rec = choose_recipe(RECIPES, recipe)
    if fast:
        rec = VAERecipe(latent_dim=4, channels=8, steps=10, batch_size=32, warmup=0, iwae_k=4)
    x_train, _ = image_tensors("mnist", "train", scale="[0, 1]", limit=512 if fast else None)
    x_test, _ = binarized_test_set(limit=64 if fast else None)
    model = ConvVAE(ConvVAEConfig(latent_dim=rec.latent_dim, channels=rec.channels, beta=rec.beta)).to(device)
    t0 = time.perf_counter()
    history = train_vae(model, x_train, rec, seed=seed)
    seconds = time.perf_counter() - t0
    metrics = {k: round(v, 4) if isinstance(v, float) else v for k, v in evaluate_vae(model, x_test, rec.iwae_k).items()}
    metrics["n_test"] = len(x_test)
    metrics["final_train_loss"] = round(history.smoothed(100)[-1], 3)
    card = {
        "name": NAME,
        "arch": "conv_vae",
        "config": model.config_dict(),
        "train_command": train_command(NAME, recipe, fast, seed),
        "data": data_card("mnist", split="train (60,000), dynamically binarised; test (10,000) "
                          f"binarised once with seed {TEST_SEED}"),
        "recipe": {"name": recipe, "steps": rec.steps, "batch_size": rec.batch_size, "lr": rec.lr,
                   "warmup": rec.warmup, "schedule": "cosine", "optimizer": "AdamW", "seed": seed},
        "metrics": metrics,
        **run_card(model, seconds, device),
    }
    save_pretrained(model.cpu(), NAME, card, out_dir)
    return card
