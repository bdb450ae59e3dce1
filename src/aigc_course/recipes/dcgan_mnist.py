"""Recipe ``dcgan_mnist``: a small DCGAN on MNIST (part 5, "MNIST GAN and DCGAN", notebook 5.7).

Data: the 60,000 MNIST training digits scaled to [-1, 1] (the range of G's tanh). Model:
:class:`~aigc_course.models.gan.DCGAN` (z of 64 dims -> 7x7 -> 14x14 -> 28x28, with the
minibatch standard-deviation layer in D), non-saturating loss, Adam(lr 2e-4, betas (0.5, 0.999))
for both players, batch 64. G's BatchNorm keeps running statistics, used at sampling time.

A GAN has no held-out loss worth reporting, so the card scores SAMPLES with the course classifier
``mnist_cnn`` (trained on MNIST, test accuracy in its card): of 2,000 samples, the fraction the
classifier labels with confidence > 0.9, and the histogram of predicted digits (how many of the 10
digits get at least 2% of the samples, and its entropy; log 10 = 2.303 nats is perfectly
uniform). The same numbers for 2,000 held-out test digits are stored as the reference.
The card adds the FID on the classifier's features (``aigc_course.metrics.image``, part 5.13)
against the test digits, and as its floor the FID of 2,000 real training digits.

* ``cpu`` (the shipped weights): 2,000 steps (2.1 epochs), a few minutes on one CPU thread.
* ``gpu`` (the full recipe; not yet run, so the shipped weights come from ``cpu``): g_channels 256,
  d_channels 64, 20,000 steps of batch 128; expect sharper digits and a higher confident fraction.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from aigc_course.data import image_tensors
from aigc_course.models.gan import DCGAN, DCGANConfig
from aigc_course.pretrained import load_pretrained, save_pretrained
from aigc_course.recipes.cards import choose_recipe, data_card, run_card, train_command
from aigc_course.runtime import get_device, set_seed
from aigc_course.train import train_gan

NAME = "dcgan_mnist"


@dataclass
class GANRecipe:
    steps: int
    batch_size: int = 64
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)


RECIPES = {
    "cpu": (DCGANConfig(latent_dim=64, g_channels=64, d_channels=32, minibatch_std=True), GANRecipe(steps=2000)),
    "gpu": (DCGANConfig(latent_dim=100, g_channels=256, d_channels=64, minibatch_std=True),
            GANRecipe(steps=20_000, batch_size=128)),
}


@torch.no_grad()
def digit_stats(images: torch.Tensor, classifier: torch.nn.Module, threshold: float = 0.9,
                min_frac: float = 0.02, batch_size: int = 500) -> dict:
    """Classifier-based statistics of images (N, 1, 28, 28) in [-1, 1].

    Returns {'confident': fraction with max softmax probability > threshold, 'modes': digits that
    receive at least ``min_frac`` of the predictions, 'entropy': entropy (nats) of the predicted
    digit histogram, 'histogram': fraction per digit}.
    """
    if images.dim() != 4 or images.shape[1:] != (1, 28, 28):
        raise ValueError(f"images must have shape (N, 1, 28, 28), got {tuple(images.shape)}.")
    if images.min() < -1.001 or images.max() > 1.001:
        raise ValueError("images must lie in [-1, 1] (the classifier's input range); rescale them first.")
    device = next(classifier.parameters()).device
    probs = torch.cat([F.softmax(classifier(images[i:i + batch_size].to(device)), -1).cpu()
                       for i in range(0, len(images), batch_size)])  # (N, 10)
    conf, pred = probs.max(1)
    hist = torch.bincount(pred, minlength=probs.shape[1]).double() / len(images)
    entropy = -(hist[hist > 0] * hist[hist > 0].log()).sum()
    return {"confident": round(float((conf > threshold).double().mean()), 4),
            "modes": int((hist >= min_frac).sum()), "entropy": round(float(entropy), 4) + 0.0,  # + 0.0 turns -0.0 into 0.0
            "histogram": [round(float(h), 4) for h in hist]}


def sample_metrics(model, x_test: torch.Tensor, x_ref: torch.Tensor | None = None, n: int = 2000,
                   seed: int = 1234) -> dict:
    """Card metrics: digit_stats of n samples and of n held-out test digits, and (when
    ``aigc_course.metrics.image`` exists) the FID on mnist_cnn features of samples vs test digits,
    with the FID of ``x_ref`` (other real digits) vs test digits as the floor."""
    classifier, _ = load_pretrained("mnist_cnn", device=next(model.parameters()).device)
    samples = model.sample(n, generator=torch.Generator().manual_seed(seed)).cpu()
    fake, real = digit_stats(samples, classifier), digit_stats(x_test[:n], classifier)
    metrics = {"n_samples": n, "confident_frac": fake["confident"], "modes_covered": fake["modes"],
               "class_entropy": fake["entropy"], "class_histogram": fake["histogram"],
               "test_confident_frac": real["confident"], "test_class_entropy": real["entropy"],
               "max_entropy": round(math.log(10), 4)}
    try:
        from aigc_course.metrics.image import features, fid
    except ImportError:
        return metrics
    feats_test = features(x_test[:n], classifier)
    metrics["fid_mnist_cnn"] = round(fid(features(samples, classifier), feats_test), 3)
    if x_ref is not None:
        metrics["fid_real_vs_test"] = round(fid(features(x_ref[:n], classifier), feats_test), 3)
    return metrics


def train(out_dir=None, fast: bool = False, seed: int = 0, recipe: str = "cpu") -> dict:
    set_seed(seed)
    device = get_device()
    model_cfg, rec = choose_recipe(RECIPES, recipe)
    if fast:
        model_cfg, rec = DCGANConfig(latent_dim=16, g_channels=8, d_channels=4, minibatch_std=True), GANRecipe(10, 16)
    x_train, _ = image_tensors("mnist", "train", limit=512 if fast else None)
    x_test, _ = image_tensors("mnist", "test", limit=64 if fast else 2000)
    model = DCGAN(model_cfg).to(device)
    t0 = time.perf_counter()
    hist_d, hist_g = train_gan(model, x_train, steps=rec.steps, batch_size=rec.batch_size, lr=rec.lr,
                               betas=rec.betas, seed=seed, desc=NAME)
    seconds = time.perf_counter() - t0
    metrics = sample_metrics(model.eval(), x_test, x_train[-2000:], n=64 if fast else 2000)
    metrics["final_d_loss"] = round(hist_d.smoothed(100)[-1], 4)
    metrics["final_g_loss"] = round(hist_g.smoothed(100)[-1], 4)
    card = {
        "name": NAME,
        "arch": "dcgan",
        "config": model.config_dict(),
        "train_command": train_command(NAME, recipe, fast, seed),
        "data": data_card("mnist", split="train (60,000), scaled to [-1, 1]"),
        "recipe": {"name": recipe, **asdict(rec), "seed": seed, "loss": "non-saturating, BCE on logits"},
        "metrics": metrics,
        **run_card(model, seconds, device),
    }
    save_pretrained(model.cpu(), NAME, card, out_dir)
    return card
