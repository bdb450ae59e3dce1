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

from aigc_course.recipes.mnist_cnn import train_classifier

NAME = "fashion_cnn"


def train(out_dir=None, fast: bool = False, seed: int = 0) -> dict:
    return train_classifier(NAME, "fashion_mnist", epochs=2, out_dir=out_dir, fast=fast, seed=seed,
                            flip=True, float16=True)
