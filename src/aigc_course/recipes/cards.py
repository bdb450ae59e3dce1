"""The parts every recipe's card shares (the shipped weights: see `book/setup.md`).

A card says how the weights were made, so that anyone can check or redo it: the recipe that was
chosen, the data (with the sha256 of every file that was read), and the run itself (time, device,
torch version, parameter count; under ``torchrun`` also the number of processes and the backend,
chapter 5.15). Each recipe adds its own config and metrics around these parts;
:func:`aigc_course.pretrained.save_pretrained` then adds the ``sha256`` of the files it writes (the
weights and tokenizers), which loading checks.
"""

from __future__ import annotations

import os

import torch

from aigc_course.data import dataset_info
from aigc_course.runtime import device_label
from aigc_course.train.distributed import dist_info


def choose_recipe(recipes: dict, name: str):
    """``recipes[name]``, or a ValueError that lists the recipes the module has."""
    if name not in recipes:
        raise ValueError(f"Unknown recipe {name!r}: use one of {sorted(recipes)}.")
    return recipes[name]


def train_command(name: str, recipe: str = "cpu", fast: bool = False, seed: int = 0) -> str:
    """The one command that retrains these weights (the default recipe is ``cpu``, the seed 0);
    under ``torchrun`` with W processes, ``torchrun --nproc_per_node W -m aigc_course.train ...``."""
    info = dist_info()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", info.world_size))  # processes on this machine
    nodes = f"--nnodes {info.world_size // local} " if local < info.world_size else ""
    launcher = f"torchrun {nodes}--nproc_per_node {local}" if info.world_size > 1 else "python"
    return (f"{launcher} -m aigc_course.train {name}" + ("" if recipe == "cpu" else f" --recipe {recipe}")
            + (f" --seed {seed}" if seed else "") + (" --fast" if fast else ""))


def data_card(dataset: str, **fields) -> dict:
    """The card's ``data`` entry: the dataset's name, ``fields`` (split, preprocessing, ...) and
    the sha256 of each of its files, as checked when they were downloaded."""
    return {"dataset": dataset, **fields, "sha256": {f.path: f.sha256 for f in dataset_info(dataset).files}}


def run_card(model: torch.nn.Module, seconds: float, device) -> dict:
    """The card's record of the training run: wall time, device, torch version, parameter count
    (and, for a data-parallel run, the processes and the backend)."""
    card = {
        "train_seconds": round(seconds, 1),
        "device": device_label(device),
        "torch": torch.__version__,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    info = dist_info()
    if info.world_size > 1:
        import torch.distributed as dist

        card["distributed"] = {"processes": info.world_size, "backend": dist.get_backend(),
                               "note": "DDP; batch sizes in the recipe are global (all processes together)"}
    return card
