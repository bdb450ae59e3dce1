"""Recipe ``gpt_tang``: a character-level GPT on regular Tang poems (chapter 5.3).

Data: the 10,008 poems of the course's chinese-poetry snapshot (traditional characters), of
which the regular five- and seven-character poems are kept (:func:`aigc_course.text.poems.regular_poems`);
5% of the regular poems (seeded shuffle) are held out for validation. Characters seen fewer than three
times become ``□``.

* ``cpu`` (the shipped weights): 4 layers, 4 heads, 128 wide, block 128, batch 16, lr 3e-3,
  3,000 steps: minutes on a laptop CPU.
* ``gpu``: 6 layers, 6 heads, 384 wide, block 256, batch 64, lr 1e-3, dropout 0.2, 5,000 steps
  (its target is a lower validation loss than the CPU recipe; it was not run for this release).
"""

from __future__ import annotations

from aigc_course.data import load_tang_poems
from aigc_course.recipes.cards import choose_recipe, data_card
from aigc_course.recipes.char_gpt import CharGPTRecipe, train_char_gpt
from aigc_course.text.poems import build_tokenizer, corpus, regular_poems, split_poems

NAME = "gpt_tang"

RECIPES = {
    "cpu": CharGPTRecipe(n_layer=4, n_head=4, n_embd=128, block_size=128, batch_size=16, steps=3000,
                         lr=3e-3, min_lr=3e-4, warmup=100,
                         target="poems that keep the 5/7-character form; val loss measured in the card"),
    "gpu": CharGPTRecipe(n_layer=6, n_head=6, n_embd=384, block_size=256, batch_size=64, steps=5000,
                         lr=1e-3, min_lr=1e-4, warmup=100, dropout=0.2,
                         target="a lower val loss than the CPU recipe (not measured here)"),
}


def tang_ids(seed: int = 0):
    """(tokenizer, train ids, val ids, train poems, val poems)."""
    train_poems, val_poems = split_poems(regular_poems(load_tang_poems()), 0.05, seed=seed)
    train_text, val_text = corpus(train_poems), corpus(val_poems)
    tok = build_tokenizer(train_text)
    return tok, tok.encode_tensor(train_text), tok.encode_tensor(val_text), train_poems, val_poems


def train(out_dir=None, fast: bool = False, seed: int = 0, recipe: str = "cpu") -> dict:
    tok, train_ids, val_ids, train_poems, val_poems = tang_ids()
    data = data_card("tang_poems", script="traditional Chinese characters",
                     split=f"regular poems; {len(train_poems)} train / {len(val_poems)} validation poems "
                           "(seeded shuffle, seed 0)")
    return train_char_gpt(NAME, recipe, choose_recipe(RECIPES, recipe), train_ids, val_ids, tok, data,
                          out_dir=out_dir, fast=fast, seed=seed)
