"""Recipe ``char_gru_shakespeare``: a character-level GRU language model on tinyshakespeare (5.1).

Data: tinyshakespeare (1,115,394 characters), nanoGPT's split: the first 90% for training, the
last 10% for validation (:func:`aigc_course.data.train_val_split`); a character vocabulary of 65
symbols, saved with the weights (``char_gru_shakespeare.tokenizer.json``).

Training: random windows of ``seq_len`` characters, each read from the zero state, the targets
shifted by one (teacher forcing); AdamW with linear warm-up then cosine decay to lr / 10,
gradient clipping at 1.0.

Two recipes (``--recipe cpu|gpu``):

* ``cpu`` (the shipped weights): embedding 64, 2 GRU layers of 256, no dropout, batch 32 x 128
  characters, lr 3e-3, 700 steps. Measured on a shared 2-core CPU: see the card
  (``train_seconds`` and the metrics). About 0.4 s per step (under 5 minutes) on an idle
  machine; the shipped run took longer because six other jobs shared the two cores, and it used
  one thread (``OMP_NUM_THREADS=1``): with two threads on busy cores a step took over 5 s.
* ``gpu`` (the full recipe; it cannot be run on the course's CPU machine and was NOT run here):
  embedding 128, 3 GRU layers of 512, dropout 0.2, batch 128 x 256, lr 2e-3, 10,000 steps.
  Expected (not measured): a validation loss of about 1.5 nats per character, close to the 1.47
  of nanoGPT's character Transformer.

Metrics (nats per character, on the validation 10%):

* ``val_loss``: the mean cross-entropy over a fixed set of 20 x 64 = 1,280 random windows of
  ``seq_len`` characters (seed 1234), each read from the zero state, as nanoGPT's
  ``estimate_loss`` does (:func:`aigc_course.text.batches.estimate_loss`); ``val_perplexity`` is
  exp(val_loss);
* ``val_loss_stream``: the whole validation text read as 16 contiguous streams with the hidden
  state carried along (:func:`aigc_course.models.char_rnn.streaming_loss`), so that early
  characters of a window are not scored without context.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch

from aigc_course.data import load_text, train_val_split
from aigc_course.models.char_rnn import CharRNN, CharRNNConfig, streaming_loss
from aigc_course.pretrained import save_pretrained
from aigc_course.recipes.cards import choose_recipe, data_card, run_card, train_command
from aigc_course.runtime import get_device, set_seed
from aigc_course.text.batches import batch_fn, estimate_loss
from aigc_course.text.tokenizers import CharTokenizer
from aigc_course.train import TrainConfig, fit

NAME = "char_gru_shakespeare"
EVAL_BATCHES, EVAL_BATCH_SIZE, EVAL_SEED = 20, 64, 1234  # the fixed validation windows


@dataclass
class Recipe:
    n_embd: int
    hidden: int
    n_layer: int
    dropout: float
    batch_size: int
    seq_len: int
    lr: float
    steps: int
    warmup: int
    target: str = ""


RECIPES = {
    "cpu": Recipe(n_embd=64, hidden=256, n_layer=2, dropout=0.0, batch_size=32, seq_len=128, lr=3e-3,
                  steps=700, warmup=50, target="minutes on a 2-core CPU; the shipped weights"),
    "gpu": Recipe(n_embd=128, hidden=512, n_layer=3, dropout=0.2, batch_size=128, seq_len=256, lr=2e-3,
                  steps=10_000, warmup=200,
                  target="not run here; expected val loss ~1.5 nats/char (nanoGPT's char Transformer: 1.47)"),
}
FAST = Recipe(n_embd=16, hidden=32, n_layer=1, dropout=0.0, batch_size=8, seq_len=32, lr=3e-3, steps=10,
              warmup=0)


def prepare_data():
    """(tokenizer, train ids, val ids): the 90/10 split of tinyshakespeare, encoded."""
    text = load_text("tinyshakespeare")
    tok = CharTokenizer.from_text(text)
    train_text, val_text = train_val_split(text, 0.1)
    return tok, tok.encode_tensor(train_text), tok.encode_tensor(val_text)


def measure(model: CharRNN, val_ids: torch.Tensor, seq_len: int, fast: bool = False) -> dict:
    """The card's metrics of ``model`` on the validation ids (see the module docstring)."""
    n_batches = 2 if fast else EVAL_BATCHES
    val_loss = estimate_loss(model, val_ids, seq_len, EVAL_BATCH_SIZE, n_batches, seed=EVAL_SEED)
    stream_ids = val_ids[:4097] if fast else val_ids
    return {
        "val_loss": round(val_loss, 4),
        "val_perplexity": round(math.exp(val_loss), 3),
        "val_loss_stream": round(streaming_loss(model, stream_ids), 4),
        "n_val_windows": n_batches * EVAL_BATCH_SIZE,
        "window": seq_len,
    }


def train(out_dir=None, fast: bool = False, seed: int = 0, recipe: str = "cpu") -> dict:
    r = choose_recipe(RECIPES, recipe)
    if fast:
        r = FAST
    set_seed(seed)
    device = get_device()
    tok, train_ids, val_ids = prepare_data()
    model = CharRNN(CharRNNConfig(tok.vocab_size, r.n_embd, r.hidden, r.n_layer, "gru", r.dropout)).to(device)
    cfg = TrainConfig(steps=r.steps, lr=r.lr, warmup=r.warmup, decay=True, lr_min=r.lr / 10, grad_clip=1.0,
                      desc=NAME)
    t0 = time.perf_counter()
    history = fit(model, lambda m, b: m(*b)[1], batch_fn(train_ids, r.seq_len, r.batch_size, seed), cfg)
    seconds = time.perf_counter() - t0
    metrics = measure(model, val_ids, r.seq_len, fast)
    metrics["final_train_loss"] = round(history.smoothed(50)[-1], 4)
    card = {
        "name": NAME,
        "arch": "char_rnn",
        "config": model.config_dict(),
        "train_command": train_command(NAME, recipe, fast, seed),
        "data": data_card("tinyshakespeare", split="first 90% train / last 10% val"),
        "recipe": {"name": "fast" if fast else recipe, **asdict(r), "optimizer": "AdamW",
                   "schedule": "linear warm-up, cosine decay to lr/10", "grad_clip": 1.0, "seed": seed},
        "recipes": {name: asdict(x) for name, x in RECIPES.items()},
        "metrics": metrics,
        "loss_curve": {"steps": history.steps[::10], "smoothed_loss": [round(v, 4) for v in history.smoothed(20)[::10]]},
        **run_card(model, seconds, device),
    }
    save_pretrained(model.cpu(), NAME, card, out_dir, tokenizer=tok)
    return card
