"""Remove the initial weights' share from EMA weights trained before the EMA was bias-corrected.

The first CPU runs of ``ddpm_mnist``, ``txt2img_mnist`` and ``latent_diffusion_mnist`` started
their EMA at the network's initial weights, so after N updates at decay d the shipped average
held d^N of them (5.0%, 13.5% and 1.8%). The initial weights are reproducible from the
recipe's seed, and the EMA is linear in them, so the exact correction is

    ema_corrected = (ema - d^N init) / (1 - d^N),

which is what the bias-corrected ``aigc_course.train.EMA`` now ships after a retrain (the
shipped ``ddpm_mnist`` and ``txt2img_mnist`` were retrained so; the script refuses weights whose
card says so). The script rebuilds each recipe's initial network in the recipe's own order of
random draws, applies the correction, re-measures the card's metrics with the recipe's own
functions and rewrites the weights and the card (``python scripts/correct_ema.py NAME --weights DIR``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from aigc_course.data import image_tensors
from aigc_course.diffusion import NoiseSchedule, ScheduleConfig
from aigc_course.diffusion.pipeline import TextToImage
from aigc_course.models import LatentDiffusion, LatentDiffusionConfig, UNet
from aigc_course.pretrained import load_pretrained, save_pretrained
from aigc_course.recipes import ddpm_mnist, txt2img_mnist
from aigc_course.recipes.diffusion_training import heldout_eps_loss
from aigc_course.runtime import set_seed
from aigc_course.text.prompts import TEMPLATES


def initial_unet(name: str, card: dict) -> dict:
    """The U-Net's weights at the start of training, drawn in the recipe's order."""
    set_seed(card["recipe"]["seed"])
    if name == "ddpm_mnist":
        return UNet(ddpm_mnist.RECIPES["cpu"][0]).state_dict()
    if name == "txt2img_mnist":
        txt2img_mnist.prompt_conditioning("cpu")  # loads the mini-CLIP first, as the recipe does
        return UNet(txt2img_mnist.RECIPES["cpu"][0]).state_dict()
    if name == "latent_diffusion_mnist":
        return LatentDiffusion(LatentDiffusionConfig()).unet.state_dict()
    raise ValueError(f"No EMA correction for {name!r}.")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--weights", default="src/aigc_course/weights")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model, card = load_pretrained(args.name)
    if "ema_correction" in card or "bias-corrected" in card["recipe"].get("ema", ""):
        raise SystemExit(f"{args.name}: its EMA is already bias-corrected (corrected before, or trained with "
                         "the bias-corrected aigc_course.train.EMA); nothing to do.")
    unet = model.unet if hasattr(model, "unet") else model
    d, n = card["recipe"]["ema_decay"], card["recipe"]["steps"]
    init = initial_unet(args.name, card)
    ema = unet.state_dict()
    share = d ** n
    unet.load_state_dict({k: (v - share * init[k]) / (1 - share) if v.dtype.is_floating_point else v
                          for k, v in ema.items()})
    schedule = NoiseSchedule(ScheduleConfig(**card["schedule"]))
    before = dict(card["metrics"])
    if args.name == "ddpm_mnist":
        x_test, _ = image_tensors("mnist", "test", limit=card["metrics"]["n_test"])
        card["metrics"]["test_eps_loss"] = round(heldout_eps_loss(model, schedule, x_test), 5)
    else:
        clip, vocab, _ = txt2img_mnist.prompt_conditioning("cpu")
        kw = {"shape": model.latent_shape, "decode": model.to_image} if hasattr(model, "unet") else {}
        pipe = TextToImage(clip, vocab, unet, schedule, **kw)
        classifier, _ = load_pretrained("mnist_cnn")
        per_digit = card["metrics"]["n_samples_per_prompt_set"] // 10
        acc = txt2img_mnist.prompt_accuracy
        card["metrics"]["prompt_accuracy"] = round(acc(pipe, classifier, "a handwritten {w}", per_digit), 4)
        card["metrics"]["prompt_accuracy_heldout_phrasing"] = round(
            acc(pipe, classifier, TEMPLATES[-1], per_digit, seed=1), 4)
    card["ema_correction"] = {
        "initial_weights_share_removed": round(share, 5),
        "how": "scripts/correct_ema.py: (ema - d^N init) / (1 - d^N), init rebuilt from the recipe's seed",
        "metrics_before": before,
    }
    card["recipe"]["ema"] = "shipped weights are the bias-corrected EMA"
    save_pretrained(model, args.name, card, Path(args.weights))
    print(args.name, "before:", before)
    print(args.name, "after: ", card["metrics"])


if __name__ == "__main__":
    main()
