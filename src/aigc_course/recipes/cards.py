"""The parts every recipe's card shares (the shipped weights: see `book/setup.md`).

A card says how the weights were made, so that anyone can check or redo it: the recipe that was
chosen, the data (with the sha256 of every file that was read), and the run itself (time, device,
torch version, parameter count). Each recipe adds its own config and metrics around these parts;
:func:`aigc_course.pretrained.save_pretrained` then adds the ``sha256`` of the files it writes (the
weights and tokenizers), which loading checks.
"""

from __future__ import annotations

import torch

from aigc_course.data import dataset_info
from aigc_course.runtime import device_label


def choose_recipe(recipes: dict, name: str):
    """``recipes[name]``, or a ValueError that lists the recipes the module has."""
    if name not in recipes:
        raise ValueError(f"Unknown recipe {name!r}: use one of {sorted(recipes)}.")
    return recipes[name]


def train_command(name: str, recipe: str = "cpu", fast: bool = False, seed: int = 0) -> str:
    """The one command that retrains these weights (the default recipe is ``cpu``, the seed 0)."""
    return (f"python -m aigc_course.train {name}" + ("" if recipe == "cpu" else f" --recipe {recipe}")
            + (f" --seed {seed}" if seed else "") + (" --fast" if fast else ""))


def data_card(dataset: str, **fields) -> dict:
    """The card's ``data`` entry: the dataset's name, ``fields`` (split, preprocessing, ...) and
    the sha256 of each of its files, as checked when they were downloaded."""
    return {"dataset": dataset, **fields, "sha256": {f.path: f.sha256 for f in dataset_info(dataset).files}}


def run_card(model: torch.nn.Module, seconds: float, device) -> dict:
    """The card's record of the training run: wall time, device, torch version, parameter count."""
    return {
        "train_seconds": round(seconds, 1),
        "device": device_label(device),
        "torch": torch.__version__,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
