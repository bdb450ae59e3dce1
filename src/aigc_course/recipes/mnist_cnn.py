"""Recipe ``mnist_cnn``: the small CNN digit classifier (part 2; the feature net of image metrics).

Data: MNIST train (60,000) scaled to [-1, 1] with random 1-pixel shifts; test: the 10,000 test
images. AdamW, lr 2e-3 with cosine decay, batch 128, 3 epochs (1,407 steps).
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
from aigc_course.runtime import get_device, set_seed
from aigc_course.train import TrainConfig, accuracy, fit, random_batches

NAME = "mnist_cnn"


def random_shift(x: torch.Tensor, max_shift: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` pixels (zero padding = background -1)."""
    B = x.shape[0]
    pad = F.pad(x, (max_shift,) * 4, value=-1.0)
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2, B), generator=generator)
    out = torch.empty_like(x)
    for i in range(B):
        out[i] = pad[i, :, dy[i] : dy[i] + 28, dx[i] : dx[i] + 28]
    return out


def train_classifier(name: str, dataset: str, epochs: int, out_dir=None, fast: bool = False, seed: int = 0,
                     flip: bool = False, float16: bool = False) -> dict:
    """Train the course CNN on ``dataset`` ("mnist" or "fashion_mnist") and save it as ``name``.

    Random 1-pixel shifts always; random horizontal flips with ``flip`` (a mirrored garment is the
    same garment, a mirrored digit is not). With ``float16`` the weights are stored in half
    precision and the test accuracy is measured on exactly those weights (``fashion_cnn``, 6.1)."""
    set_seed(seed)
    device = get_device()
    x_train, y_train = image_tensors(dataset, "train", limit=2000 if fast else None)
    x_test, y_test = image_tensors(dataset, "test", limit=1000 if fast else None)
    batch_size = 128
    steps = 20 if fast else epochs * (len(x_train) // batch_size)
    g = torch.Generator().manual_seed(seed)

    sample = random_batches(x_train, y_train, batch_size=batch_size, generator=g)

    def get_batch(step):
        x, y = sample(step)
        if flip:
            mirrored = torch.rand(len(x), generator=g) < 0.5
            x = torch.where(mirrored[:, None, None, None], x.flip(-1), x)
        return random_shift(x, generator=g), y

    model = CNNClassifier(CNNConfig()).to(device)
    cfg = TrainConfig(steps=steps, lr=2e-3, weight_decay=1e-4, decay=True, warmup=50 if not fast else 0,
                      desc=name)
    t0 = time.perf_counter()
    history = fit(model, lambda m, b: F.cross_entropy(m(b[0]), b[1]), get_batch, cfg)
    seconds = time.perf_counter() - t0
    if float16:
        model = model.cpu().half().float().to(device).eval()  # measure exactly the shipped weights
    acc = accuracy(model, x_test, y_test)
    card = {
        "name": name,
        "arch": "cnn_classifier",
        "config": model.config_dict(),
        "train_command": train_command(name, fast=fast, seed=seed),
        "data": data_card(dataset),
        "recipe": {"steps": steps, "batch_size": batch_size, "lr": cfg.lr, "schedule": "cosine",
                   "augment": "random 1-pixel shifts" + (" and horizontal flips" if flip else ""), "seed": seed},
        **({"weights_dtype": "float16"} if float16 else {}),
        "metrics": {"test_accuracy": round(acc, 4), "final_train_loss": round(history.smoothed(50)[-1], 4),
                    "n_test": len(x_test)},
        **run_card(model, seconds, device),
    }
    save_pretrained(copy.deepcopy(model).cpu().half() if float16 else model.cpu(), name, card, out_dir)
    return card


def train(out_dir=None, fast: bool = False, seed: int = 0) -> dict:
    return train_classifier(NAME, "mnist", epochs=3, out_dir=out_dir, fast=fast, seed=seed)
