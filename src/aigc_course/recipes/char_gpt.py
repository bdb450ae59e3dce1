"""Shared training code of the character-level GPT recipes (``gpt_shakespeare``, ``gpt_tang``).

Taught in chapters 5.2 and 5.3. A recipe is a :class:`CharGPTRecipe`: the model shape, the batch
and nanoGPT's optimiser settings (AdamW, betas (0.9, 0.99), weight decay on matrices only,
linear warm-up then cosine decay to ``min_lr``). Each model has a ``cpu`` recipe (minutes on a
laptop: the shipped weights) and a ``gpu`` recipe (the full one).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from aigc_course.models import GPT, GPTConfig
from aigc_course.pretrained import save_pretrained
from aigc_course.recipes.cards import run_card, train_command
from aigc_course.runtime import get_device, set_seed
from aigc_course.text.batches import batch_fn, estimate_loss
from aigc_course.train import TrainConfig, fit


@dataclass(frozen=True)
class CharGPTRecipe:
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    batch_size: int
    steps: int
    lr: float
    min_lr: float
    warmup: int
    dropout: float = 0.0
    weight_decay: float = 0.1
    target: str = ""  # the metric this recipe is expected to reach, in words


def eval_windows(recipe: CharGPTRecipe) -> tuple[int, int]:
    """(batches, batch size) of the fixed validation estimate: 200 batches of 12 windows."""
    return 200, 12


def train_char_gpt(name: str, recipe_name: str, recipe: CharGPTRecipe, train_ids: torch.Tensor,
                   val_ids: torch.Tensor, tokenizer, data_card: dict, out_dir=None, fast: bool = False,
                   seed: int = 0) -> dict:
    """Train a character GPT with ``recipe`` and save it (weights, card, tokenizer) as ``name``."""
    set_seed(seed)
    device = get_device()
    steps = 20 if fast else recipe.steps
    cfg = GPTConfig(tokenizer.vocab_size, recipe.block_size, recipe.n_layer, recipe.n_head,
                    recipe.n_embd, dropout=recipe.dropout, bias=False)
    model = GPT(cfg).to(device)
    optimizer = model.configure_optimizer(recipe.lr, recipe.weight_decay, betas=(0.9, 0.99))
    tcfg = TrainConfig(steps=steps, lr=recipe.lr, lr_min=recipe.min_lr, decay=True,
                       warmup=0 if fast else recipe.warmup, grad_clip=1.0, desc=name)
    data = batch_fn(train_ids.to(device), recipe.block_size, recipe.batch_size, seed=seed)
    t0 = time.perf_counter()
    history = fit(model, lambda m, b: m(*b)[1], data, tcfg, optimizer=optimizer)
    seconds = time.perf_counter() - t0
    n_batches, batch = (5, 4) if fast else eval_windows(recipe)
    val = estimate_loss(model, val_ids.to(device), recipe.block_size, batch, n_batches, seed=0)
    train = estimate_loss(model, train_ids.to(device), recipe.block_size, batch, n_batches, seed=0)
    card = {
        "name": name,
        "arch": "gpt",
        "config": model.config_dict(),
        "train_command": train_command(name, recipe_name, fast, seed),
        "data": data_card,
        "recipe": {"name": recipe_name, **asdict(recipe), "steps": steps, "seed": seed,
                   "optimizer": "AdamW betas (0.9, 0.99), weight decay on matrices only",
                   "schedule": "linear warm-up, cosine decay to min_lr"},
        "metrics": {
            "val_loss": round(val, 4),
            "train_loss": round(train, 4),
            "val_perplexity": round(float(torch.exp(torch.tensor(val))), 3),
            "unit": "nats per character",
            "estimate": f"{n_batches} x {batch} random windows of {recipe.block_size} characters, seed 0",
        },
        **run_card(model, seconds, device),
        "history_tail": [round(v, 4) for v in history.smoothed(50)[-1:]],
    }
    save_pretrained(model.cpu(), name, card, out_dir, tokenizer=tokenizer)
    return card
