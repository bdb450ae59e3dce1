"""Recipe ``gpt_levels``: a small character GPT that writes ASCII game levels (chapter 6.2).

Data: no level data set ships with the course, so the levels come from the procedural
rooms-and-corridors generator of :mod:`aigc_course.apps.levels` (16 x 10 tiles; start, exit, and
in about half of them a door with its key): 4,000 training levels (seed 0) and 200 validation
levels (seed 1), each followed by a blank line. The vocabulary is the six tiles and the newline.

* ``cpu`` (the shipped weights): 2 layers, 4 heads, 64 wide, block 176 (one level and its
  blank line fit in the context), batch 16, lr 3e-3 with warm-up and cosine decay, 1,500 steps.

The card's level metrics (validity, playability, novelty, diversity of 200 levels sampled freely
at temperature 1, and 200 sampled at temperature 1.3 with the grid shape and one S, E, K, D at most
enforced, :func:`aigc_course.apps.levels.sample_levels_constrained`) are measured on the shipped
float16 weights. :func:`ship_float16` is shared with
the ``gpt_abc`` recipe.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from aigc_course.apps import levels as lv
from aigc_course.checkpoint import load_tensors
from aigc_course.models import GPT, GPTConfig
from aigc_course.pretrained import save_pretrained
from aigc_course.recipes.cards import choose_recipe
from aigc_course.recipes.char_gpt import CharGPTRecipe, train_char_gpt
from aigc_course.text.tokenizers import CharTokenizer
from aigc_course.train.distributed import barrier, is_main_process

NAME = "gpt_levels"
N_TRAIN, N_VAL = 4000, 200

RECIPES = {
    "cpu": CharGPTRecipe(n_layer=2, n_head=4, n_embd=64, block_size=176, batch_size=16, steps=1500,
                         lr=3e-3, min_lr=3e-4, warmup=100,
                         target="most sampled levels valid and playable; metrics in the card"),
}


def level_data(n_train: int = N_TRAIN, n_val: int = N_VAL, seed: int = 0):
    """(tokenizer, train ids, val ids, train levels, val levels); the tokenizer knows every tile."""
    train_levels = lv.generate_levels(n_train, seed=seed)
    val_levels = lv.generate_levels(n_val, seed=seed + 1)
    tok = CharTokenizer(sorted("\n" + lv.TILES))
    return (tok, tok.encode_tensor(lv.level_corpus(train_levels)), tok.encode_tensor(lv.level_corpus(val_levels)),
            train_levels, val_levels)


def level_metrics(levels: list[str], train_levels: list[str], cfg: lv.LevelConfig | None = None) -> dict:
    """Validity, playability, novelty and diversity of sampled ``levels`` (shares in [0, 1])."""
    cfg = cfg or lv.LevelConfig()
    valid = [x for x in levels if lv.check_valid(x, cfg.width, cfg.height) is None]
    playable = [x for x in valid if lv.find_path(x) is not None]
    out = {"n": len(levels), "valid": round(len(valid) / len(levels), 4),
           "playable": round(len(playable) / len(levels), 4)}
    if len(valid) >= 2:
        nov = lv.novelty(valid, train_levels)
        out.update(novel=round(nov["novel"], 4), nn_hamming=round(nov["nn_mean"], 2),
                   diversity=round(lv.diversity(valid), 2))
    return out


def flat_level_metrics(free: dict, constrained: dict) -> dict:
    """The card's metrics: ``free_*`` (plain sampling, T = 1) and ``constrained_*`` (T = 1.3)."""
    out = {"n_samples": free["n"]}
    out.update({f"free_{k}": v for k, v in free.items() if k != "n"})
    out.update({f"constrained_{k}": v for k, v in constrained.items() if k != "n"})
    return out


def ship_float16(name: str, card: dict, trained_dir: str | Path, tokenizer, out_dir=None,
                 measure=None) -> tuple[GPT, dict]:
    """Reload the GPT that ``train_char_gpt`` wrote to ``trained_dir``, round it to float16,
    add ``measure(model)`` (metrics of the rounded model) to the card and save it as ``name``.
    Under torchrun only rank 0 wrote ``trained_dir``: it measures and saves, the other ranks
    wait for it and get ``(None, card)``."""
    if not is_main_process():
        barrier()  # paired with the one at the end of rank 0's save_pretrained
        return None, card
    tensors, _ = load_tensors(Path(trained_dir) / f"{name}.safetensors")
    model = GPT(GPTConfig(**card["config"]))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if set(missing) != {"lm_head.weight"} or unexpected:  # the head is tied to the token embedding
        raise RuntimeError(f"Unexpected weights: missing {missing}, unexpected {unexpected}.")
    model = model.half().float().eval()  # measure exactly what is shipped
    card = {**card, "weights_dtype": "float16",
            "note": "val_loss and train_loss were measured before rounding to float16; the other "
                    "metrics on the float16 weights"}
    if measure is not None:
        card["metrics"] = {**card["metrics"], **measure(model)}
    save_pretrained(model.half(), name, card, out_dir, tokenizer=tokenizer)
    return model.float(), card


def train(out_dir=None, fast: bool = False, seed: int = 0, recipe: str = "cpu") -> dict:
    n_train, n_val, n_samples = (100, 20, 8) if fast else (N_TRAIN, N_VAL, 200)
    tok, train_ids, val_ids, train_levels, _ = level_data(n_train, n_val, seed=0)
    data = {"dataset": "procedural levels (aigc_course.apps.levels.generate_levels)",
            "split": f"{n_train} train levels (seed 0), {n_val} validation levels (seed 1)",
            "level": "16 x 10 tiles: # wall, . floor, S start, E exit, K key, D door"}

    def measure(model):
        with torch.no_grad():
            free = lv.sample_levels(model, tok, n_samples, temperature=1.0, seed=0)
            constrained = lv.sample_levels_constrained(model, tok, n_samples, temperature=1.3, seed=0, once="SEKD")
        return flat_level_metrics(level_metrics(free, train_levels), level_metrics(constrained, train_levels))

    with tempfile.TemporaryDirectory() as tmp:
        card = train_char_gpt(NAME, recipe, choose_recipe(RECIPES, recipe), train_ids, val_ids, tok, data,
                              out_dir=tmp, fast=fast, seed=seed)
        _, card = ship_float16(NAME, card, tmp, tok, out_dir, measure)
    return card
