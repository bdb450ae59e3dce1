"""Recipe ``latent_diffusion_mnist``: Stable Diffusion's recipe in miniature (chapter 5.11).

Two stages, as in Rombach et al. (2022):

1. the KL autoencoder (1x28x28 <-> 4x7x7) is trained alone on MNIST (MSE + 1e-4 KL);
   then ``latent_scale`` = 1 / std of the training latents is measured and stored in the config;
2. the text-conditioned U-Net (base 32, 7x7 -> 4x4) is trained with the epsilon loss on the
   scaled latents (posterior means) of the training digits, conditioned like ``txt2img_mnist``
   on the frozen mini-CLIP embedding of a random phrasing, with 10% empty prompts for guidance.

* ``cpu`` (the shipped weights): 1,500 autoencoder steps + 4,000 U-Net steps, batch 128.
* ``gpu`` (the full recipe; not yet run): 5,000 + 40,000 steps, U-Net base 64. Its target: a
  prompt accuracy at least the ``cpu`` recipe's 0.974 with a lower autoencoder MSE.

Metrics: the autoencoder's test reconstruction error (MSE on [-1, 1] pixels, PSNR), and the
prompted-digit accuracy of generated images (DDIM 50 steps, guidance 3, judged by ``mnist_cnn``).
"""

from __future__ import annotations

import math
import time

import torch

from aigc_course.data import image_tensors
from aigc_course.diffusion.pipeline import TextToImage
from aigc_course.models.latent_diffusion import LatentDiffusion, LatentDiffusionConfig
from aigc_course.pretrained import load_pretrained, save_pretrained
from aigc_course.recipes.cards import choose_recipe, data_card
from aigc_course.recipes.diffusion_training import DiffusionRecipe, base_card, train_diffusion
from aigc_course.recipes.txt2img_mnist import (
    P_UNCOND,
    TEXT_ENCODER,
    prompt_accuracy,
    prompt_conditioning,
)
from aigc_course.runtime import get_device, set_seed
from aigc_course.text.prompts import TEMPLATES
from aigc_course.train import TrainConfig, fit, random_batches

NAME = "latent_diffusion_mnist"
RECIPES = {
    "cpu": (LatentDiffusionConfig(), 1500, DiffusionRecipe(steps=4000, lr=1e-3)),
    "gpu": (LatentDiffusionConfig(unet_base=64), 5000, DiffusionRecipe(steps=40_000, lr=2e-4, warmup=1000)),
}


def train(out_dir=None, fast: bool = False, seed: int = 0, recipe: str = "cpu") -> dict:
    set_seed(seed)
    device = get_device()
    cfg, ae_steps, rec = choose_recipe(RECIPES, recipe)
    if fast:
        cfg = LatentDiffusionConfig(ae_channels=(8, 16), unet_base=8, time_dim=32)
        ae_steps, rec = 10, DiffusionRecipe(steps=10, batch_size=16, warmup=0)
    x_train, y_train = image_tensors("mnist", "train", limit=512 if fast else None)
    x_test, _ = image_tensors("mnist", "test", limit=64 if fast else None)
    model = LatentDiffusion(cfg).to(device)
    g = torch.Generator().manual_seed(seed)

    # stage 1: the autoencoder alone
    ae_batch = random_batches(x_train, batch_size=rec.batch_size, generator=g)

    t0 = time.perf_counter()
    ae_hist = fit(model.autoencoder, lambda m, x: m.loss(x), ae_batch,
                  TrainConfig(steps=ae_steps, lr=2e-3, warmup=0 if fast else 100, decay=True, desc=f"{NAME}/ae"))
    ae_seconds = time.perf_counter() - t0
    model.autoencoder.requires_grad_(False)
    with torch.no_grad():
        mse = sum(torch.nn.functional.mse_loss(model.autoencoder.decode(model.autoencoder.encode(xb.to(device))[0]),
                                               xb.to(device), reduction="sum").item()
                  for xb in x_test.split(1000)) / x_test.numel()
        latents = torch.cat([model.autoencoder.encode(xb.to(device))[0].cpu() for xb in x_train.split(1000)])
    model.config.latent_scale = round(1.0 / latents.std().item(), 5)
    latents = latents * model.config.latent_scale  # (N, 4, 7, 7), unit variance

    # stage 2: the U-Net on latents, conditioned on the frozen text encoder
    clip, vocab, cond_fn = prompt_conditioning(device)
    history, schedule, seconds = train_diffusion(model.unet, latents, y_train, rec, cond_fn=cond_fn, seed=seed,
                                                 desc=f"{NAME}/unet")
    pipe = TextToImage(clip, vocab, model.unet, schedule, shape=model.latent_shape, decode=model.to_image)
    classifier, _ = load_pretrained("mnist_cnn", device=device)
    per_digit, steps = (2, 5) if fast else (50, 50)
    card = base_card(NAME, "latent_diffusion", model, rec, recipe, seed, fast, ae_seconds + seconds, device,
                     data_card("mnist", split="train (60,000), scaled to [-1, 1]",
                               prompts="aigc_course.text.prompts.TRAIN_TEMPLATES"))
    card["recipe"]["autoencoder_steps"] = ae_steps
    card["schedule"] = {"kind": rec.schedule, "num_steps": rec.num_train_steps}
    card["text_encoder"] = TEXT_ENCODER
    card["conditioning"] = {"p_uncond": P_UNCOND, "null": "mini-CLIP embedding of the empty prompt"}
    card["metrics"] = {
        "ae_test_mse": round(mse, 5),
        "ae_test_psnr_db": round(10 * math.log10(4.0 / mse), 2),  # peak-to-peak range 2 on [-1, 1]
        "ae_final_train_loss": round(ae_hist.smoothed(50)[-1], 5),
        "latent_scale": model.config.latent_scale,
        "prompt_accuracy": round(prompt_accuracy(pipe, classifier, "a handwritten {w}", per_digit, 3.0, steps), 4),
        "prompt_accuracy_heldout_phrasing": round(prompt_accuracy(pipe, classifier, TEMPLATES[-1], per_digit, 3.0,
                                                                  steps, seed=1), 4),
        "n_samples_per_prompt_set": 10 * per_digit,
        "sampler": f"DDIM {steps} steps, guidance 3.0, judged by mnist_cnn",
        "final_train_loss": round(history.smoothed(100)[-1], 5),
        "autoencoder_seconds": round(ae_seconds, 1),
    }
    model.requires_grad_(True)
    save_pretrained(model.cpu(), NAME, card, out_dir)
    return card
