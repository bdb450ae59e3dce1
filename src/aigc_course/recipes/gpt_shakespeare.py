"""Recipe ``gpt_shakespeare``: a character-level GPT on tinyshakespeare (chapter 5.2).

Data: nanoGPT's ``shakespeare_char`` preparation: the 65 characters of the 1,115,394-character
file, the first 90% for training and the last 10% for validation.

* ``cpu`` (the shipped weights): 4 layers, 4 heads, 128 wide, block 128, batch 16, lr 3e-3
  with warm-up and cosine decay, 3,000 steps: minutes on a laptop CPU.
* ``gpu``: nanoGPT's GPU recipe (6 layers, 6 heads, 384 wide, block 256, batch 64, lr 1e-3,
  dropout 0.2, 5,000 steps); nanoGPT reports a validation loss of 1.4697 after about 3 minutes
  on one A100. Not run in this repository's CI (no GPU there).
"""

from __future__ import annotations

import torch

from aigc_course.data import load_text, train_val_split
from aigc_course.recipes.cards import choose_recipe, data_card
from aigc_course.recipes.char_gpt import CharGPTRecipe, train_char_gpt
from aigc_course.text.tokenizers import CharTokenizer

NAME = "gpt_shakespeare"

RECIPES = {
    "cpu": CharGPTRecipe(n_layer=4, n_head=4, n_embd=128, block_size=128, batch_size=16, steps=3000,
                         lr=3e-3, min_lr=3e-4, warmup=100,
                         target="val loss about 1.65 nats/char in a few minutes on 2 CPU cores"),
    "gpu": CharGPTRecipe(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=64, steps=5000,
                         lr=1e-3, min_lr=1e-4, warmup=100, dropout=0.2,
                         target="val loss 1.47 nats/char (nanoGPT: 1.4697 in ~3 min on an A100)"),
}


def shakespeare_ids() -> tuple[CharTokenizer, torch.Tensor, torch.Tensor]:
    """(tokenizer, train ids, val ids) with nanoGPT's 90/10 split."""
    text = load_text("tinyshakespeare")
    tok = CharTokenizer.from_text(text)
    train, val = train_val_split(tok.encode_tensor(text), 0.1)
    return tok, train, val


def train(out_dir=None, fast: bool = False, seed: int = 0, recipe: str = "cpu") -> dict:
    tok, train_ids, val_ids = shakespeare_ids()
    data = data_card("tinyshakespeare", split="first 90% train, last 10% validation (characters)")
    return train_char_gpt(NAME, recipe, choose_recipe(RECIPES, recipe), train_ids, val_ids, tok, data,
                          out_dir=out_dir, fast=fast, seed=seed)
