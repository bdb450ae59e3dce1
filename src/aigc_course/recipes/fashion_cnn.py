"""Recipe ``fashion_cnn``: the small CNN classifier on Fashion-MNIST (the judge of chapter 6.1).

Chapter 6.1 ("Marketing and advertising") uses it as the automatic quality and brand-safety
filter of generated product images: its softmax confidence, its predicted class (an image whose
predicted class differs from the brief is off-target) and its penultimate features (near-duplicate
detection by distance). It also gives the on-target rate of ``fashion_diffusion``.

Data: Fashion-MNIST train (60,000) scaled to [-1, 1] with random 1-pixel shifts and horizontal
flips; test: the 10,000 test images. The course CNN (``CNNConfig()``: 16 and 32 channels, 64
features), AdamW, lr 2e-3 with warm-up and cosine decay, batch 128, 2 epochs (936 steps), one CPU
thread. Weights stored in float16; the test accuracy is measured on exactly the shipped weights.
"""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F

from aigc_course.data import image_tensors
from aigc_course.models import CNNClassifier, CNNConfig
from aigc_course.pretrained import save_pretrained
from aigc_course.recipes.cards import data_card, run_card, train_command
from aigc_course.recipes.mnist_cnn import random_shift
from aigc_course.runtime import get_device, set_seed
from aigc_course.train import TrainConfig, accuracy, fit, random_batches

NAME = "fashion_cnn"


def train(out_dir=None, fast: bool = False, seed: int = 0) -> dict:
    set_seed(seed)
    device = get_device()
    x_train, y_train = image_tensors("fashion_mnist", "train", limit=2000 if fast else None)
    x_test, y_test = image_tensors("fashion_mnist", "test", limit=1000 if fast else None)
    batch_size, epochs = 128, 2
    steps = 20 if fast else epochs * (len(x_train) // batch_size)
    g = torch.Generator().manual_seed(seed)
    sample = random_batches(x_train, y_train, batch_size=batch_size, generator=g)

    def get_batch(step):
        x, y = sample(step)
        flip = torch.rand(len(x), generator=g) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)  # a mirrored garment is the same garment
        return random_shift(x, generator=g), y

    model = CNNClassifier(CNNConfig()).to(device)
    cfg = TrainConfig(steps=steps, lr=2e-3, weight_decay=1e-4, decay=True, warmup=0 if fast else 50, desc=NAME)
    t0 = time.perf_counter()
    history = fit(model, lambda m, b: F.cross_entropy(m(b[0]), b[1]), get_batch, cfg)
    seconds = time.perf_counter() - t0
    model = model.cpu().half().float().to(device).eval()  # measure exactly the shipped float16 weights
    acc = accuracy(model, x_test, y_test)
    card = {
        "name": NAME,
        "arch": "cnn_classifier",
        "config": model.config_dict(),
        "train_command": train_command(NAME, fast=fast, seed=seed),
        "data": data_card("fashion_mnist"),
        "recipe": {"steps": steps, "batch_size": batch_size, "lr": cfg.lr, "schedule": "cosine",
                   "augment": "random 1-pixel shifts and horizontal flips", "seed": seed},
        "weights_dtype": "float16",
        "metrics": {"test_accuracy": round(acc, 4), "final_train_loss": round(history.smoothed(50)[-1], 4),
                    "n_test": len(x_test)},
        **run_card(model, seconds, device),
    }
    save_pretrained(copy.deepcopy(model).cpu().half(), NAME, card, out_dir)
    return card
