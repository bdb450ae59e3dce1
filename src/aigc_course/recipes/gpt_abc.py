"""Recipe ``gpt_abc``: a character GPT on folk tunes in ABC notation (chapter 6.2).

Data: the ABC files bundled with ``music21`` (no download): the Essen folksong collection and
the 1,850 tunes of O'Neill's *Music of Ireland* (folder ``oneills1850``), split into single tunes and cleaned by
:func:`aigc_course.apps.music.load_abc_tunes` (header fields M:, L:, K: and the body); 5% of the
tunes (seeded shuffle, seed 0) are held out for validation.

* ``cpu`` (the shipped weights): 3 layers, 4 heads, 96 wide, block 128, batch 16, lr 3e-3
  with warm-up and cosine decay, 1,500 steps.

The card's tune metrics (of 32 tunes sampled after a blank line at temperature 1: the share that
music21 parses, key and metre consistency with their own headers) are measured on the shipped
float16 weights.
"""

from __future__ import annotations

import tempfile

import torch

from aigc_course.apps import music
from aigc_course.recipes.cards import choose_recipe
from aigc_course.recipes.char_gpt import CharGPTRecipe, train_char_gpt
from aigc_course.recipes.gpt_levels import ship_float16
from aigc_course.text.tokenizers import CharTokenizer

NAME = "gpt_abc"
NEW_CHARS = 256  # characters sampled per tune; longer tunes are cut off

RECIPES = {
    "cpu": CharGPTRecipe(n_layer=3, n_head=4, n_embd=96, block_size=128, batch_size=16, steps=1500,
                         lr=3e-3, min_lr=3e-4, warmup=100,
                         target="most sampled tunes parse with music21; metrics in the card"),
}


def abc_data(seed: int = 0):
    """(tokenizer, train ids, val ids, train tunes, val tunes)."""
    train_tunes, val_tunes = music.split_train_val(music.load_abc_tunes(), 0.05, seed=seed)
    train_text, val_text = music.corpus_text(train_tunes), music.corpus_text(val_tunes)
    tok = CharTokenizer.from_text(train_text + val_text)
    return tok, tok.encode_tensor(train_text), tok.encode_tensor(val_text), train_tunes, val_tunes


@torch.no_grad()
def sample_tunes(model, tokenizer, n: int, prompt: str = music.SEPARATOR, temperature: float = 1.0,
                 top_k: int | None = None, seed: int = 0, new_chars: int = NEW_CHARS) -> list[str]:
    """``n`` tunes sampled after ``prompt`` (a blank line: the model writes the header too)."""
    device = next(model.parameters()).device
    ids = tokenizer.encode_tensor(prompt).repeat(n, 1).to(device)  # (n, len(prompt))
    gen = torch.Generator(device=device).manual_seed(seed)
    out = model.generate(ids, new_chars, temperature=temperature, top_k=top_k, generator=gen)
    head = prompt.lstrip("\n")  # the header lines the prompt already gave
    return [music.first_tune(head + tokenizer.decode(row[ids.shape[1]:])) for row in out.cpu()]


def train(out_dir=None, fast: bool = False, seed: int = 0, recipe: str = "cpu") -> dict:
    tok, train_ids, val_ids, train_tunes, val_tunes = abc_data()
    n_samples, new_chars = (2, 48) if fast else (32, NEW_CHARS)
    data = {"dataset": "music21 corpus: essenFolksong + oneills1850 ABC files (bundled, public domain)",
            "split": f"{len(train_tunes)} train / {len(val_tunes)} validation tunes (seeded shuffle, seed 0)",
            "cleaning": "aigc_course.apps.music.load_abc_tunes (headers M, L, K; ornaments removed)"}

    def measure(model):
        tunes = sample_tunes(model, tok, n_samples, temperature=1.0, seed=0, new_chars=new_chars)
        summary = music.summarize_checks([music.check_tune(t) for t in tunes])
        return {f"tunes_{k}": round(v, 4) for k, v in summary.items()}

    if fast:
        train_ids = train_ids[:20000]
    with tempfile.TemporaryDirectory() as tmp:
        card = train_char_gpt(NAME, recipe, choose_recipe(RECIPES, recipe), train_ids, val_ids, tok, data,
                              out_dir=tmp, fast=fast, seed=seed)
        _, card = ship_float16(NAME, card, tmp, tok, out_dir, measure)
    return card
