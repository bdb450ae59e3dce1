"""Recipe ``captioner_mnist``: captions of MNIST digits with attention over a 7x7 grid (5.12).

Data: MNIST (:func:`aigc_course.data.image_tensors`, [-1, 1]); the first 55,000 training images
train, the last 5,000 validate, the 10,000 test images are held out. Captions come from
:mod:`aigc_course.text.captions`: the label plus stroke thickness and slant measured on the pixels,
cut at the tertiles of the 55,000 training images (the edges are stored in the card under
``data.bins``). Every training step draws a fresh template for each image (four phrasings); the
validation and test captions use one template per image drawn with ``random.Random(seed)``.
The vocabulary (35 words with the specials) is saved with the weights.

Two recipes (``--recipe cpu|gpu``):

* ``cpu`` (the shipped weights): channels (16, 32, 64), embedding 32, GRU 128, attention 64,
  dropout 0.1, batch 64, AdamW lr 3e-3 with warm-up and cosine decay, 1,800 steps (about two
  epochs). About 0.07 s of one CPU core per step (2 to 3 minutes in all on an idle machine); the
  shipped run (``OMP_NUM_THREADS=1``) shared two cores with other training jobs, so its
  ``train_seconds`` (wall time) is much longer.
* ``gpu`` (the full recipe; it cannot be run on the course's CPU machine and was NOT run here):
  channels (32, 64, 128), embedding 64, GRU 256, attention 128, batch 256, lr 2e-3, 15,000 steps
  (about 70 epochs) with random 1-pixel shifts. Target: label accuracy above 99% and thickness /
  slant accuracy above the CPU recipe's (their ceiling is below 100%: images near a class edge).

Metrics on the 10,000 test images, greedy decoding:

* ``bleu4``: corpus BLEU-4 (:func:`aigc_course.metrics.text.corpus_bleu`) against the four
  phrasings of the true content (four references per image), so a right caption in any template
  scores 100;
* ``label_accuracy``, ``thickness_accuracy``, ``slant_accuracy``, ``all_correct``: the fields
  read back from the generated caption (:func:`aigc_course.text.captions.parse_caption`); ``parsed``:
  the fraction of captions in which every field appears exactly once;
* ``test_loss`` / ``test_perplexity``: teacher-forced cross-entropy per word (and <eos>) of the
  test captions. Its floor is not 1: which of the four templates a caption uses is random, so the
  first word(s) carry about log 4 nats that no image can explain.

Weights are stored in float16; the metrics are measured on exactly the shipped (rounded) weights.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import asdict, dataclass

import torch

from aigc_course.data import image_tensors
from aigc_course.metrics.text import corpus_bleu
from aigc_course.models.captioner import Captioner, CaptionerConfig
from aigc_course.pretrained import save_pretrained
from aigc_course.recipes.cards import choose_recipe, data_card, run_card, train_command
from aigc_course.runtime import get_device, set_seed
from aigc_course.text.captions import (
    TEMPLATES,
    AttributeBins,
    all_phrasings,
    attribute_accuracy,
    build_captions,
    caption,
    caption_vocab,
    encode_captions,
    measure_attributes,
)
from aigc_course.train import TrainConfig, evaluate, fit, random_batches

NAME = "captioner_mnist"
N_VAL = 5000


@dataclass
class Recipe:
    channels: tuple[int, int, int]
    emb: int
    hidden: int
    attn_dim: int
    dropout: float
    batch_size: int
    lr: float
    steps: int
    shift: int = 0  # random shifts of up to this many pixels (augmentation)
    target: str = ""


RECIPES = {
    "cpu": Recipe(channels=(16, 32, 64), emb=32, hidden=128, attn_dim=64, dropout=0.1, batch_size=64, lr=3e-3,
                  steps=1800, target="a few minutes on one CPU thread; the shipped weights"),
    "gpu": Recipe(channels=(32, 64, 128), emb=64, hidden=256, attn_dim=128, dropout=0.1, batch_size=256, lr=2e-3,
                  steps=15000, shift=1, target="not run here; target: label accuracy > 99%, attributes above cpu"),
}
FAST = Recipe(channels=(8, 16, 16), emb=8, hidden=16, attn_dim=8, dropout=0.0, batch_size=16, lr=3e-3, steps=20)


def prepare_data(fast: bool = False, seed: int = 0) -> dict:
    """Images, labels, attribute classes and fixed captions of train / val / test, and the bins."""
    x, y = image_tensors("mnist", "train", limit=2000 if fast else None)
    x_test, y_test = image_tensors("mnist", "test", limit=200 if fast else None)
    n_val = 200 if fast else N_VAL
    parts = {"train": (x[:-n_val], y[:-n_val]), "val": (x[-n_val:], y[-n_val:]), "test": (x_test, y_test)}
    bins = AttributeBins.fit(measure_attributes(parts["train"][0]))
    data = {"bins": bins}
    for k, (xi, yi) in parts.items():
        classes = bins.classes(measure_attributes(xi))
        data[k] = {"x": xi, "y": yi, "classes": classes,
                   "captions": build_captions(yi, classes, seed=seed + {"train": 0, "val": 1, "test": 2}[k])}
    return data


def batches_of(part: dict, vocab, batch_size: int = 500) -> list[dict]:
    """Fixed teacher-forcing batches of a part (for validation and test losses)."""
    out = []
    for i in range(0, len(part["y"]), batch_size):
        tgt_in, tgt_out = encode_captions(vocab, part["captions"][i : i + batch_size])
        out.append({"images": part["x"][i : i + batch_size], "tgt_in": tgt_in, "tgt_out": tgt_out})
    return out


def batch_fn(part: dict, vocab, batch_size: int, seed: int = 0, shift: int = 0):
    """``step -> batch`` of random images, each captioned with a freshly drawn template."""
    g = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    thick, slant = part["classes"]["thickness"], part["classes"]["slant"]

    sample = random_batches(part["x"], part["y"], thick, slant, batch_size=batch_size, generator=g)

    def get(step: int) -> dict:
        images, y, th, sl = sample(step)
        texts = [caption(int(a), int(b), int(c), rng.randrange(len(TEMPLATES))) for a, b, c in zip(y, th, sl)]
        tgt_in, tgt_out = encode_captions(vocab, texts)
        if shift:  # pixel shifts keep thickness and slant: the captions stay true
            images = torch.roll(images, tuple(torch.randint(-shift, shift + 1, (2,), generator=g).tolist()), (2, 3))
        return {"images": images, "tgt_in": tgt_in, "tgt_out": tgt_out}

    return get


def test_metrics(model: Captioner, part: dict, vocab) -> dict:
    """BLEU-4 (four references), attribute accuracies and perplexity of ``part``."""
    batches = batches_of(part, vocab)
    n_tok = [int((b["tgt_out"] != 0).sum()) for b in batches]
    losses = [evaluate(model, lambda m, b: m.loss(b), [b]) for b in batches]
    loss = sum(lo * n for lo, n in zip(losses, n_tok)) / sum(n_tok)  # mean per word
    texts, _ = model.caption(part["x"], vocab)
    y, cl = part["y"].tolist(), part["classes"]
    refs = [all_phrasings(y[i], int(cl["thickness"][i]), int(cl["slant"][i])) for i in range(len(y))]
    streams = [[r[k] for r in refs] for k in range(len(TEMPLATES))]  # 4 reference streams
    tokenized = [" ".join(vocab.tokenize(t)) for t in texts]
    metrics = {"bleu4": round(corpus_bleu(tokenized, streams).score, 2)}
    metrics.update({k: round(v, 4) for k, v in attribute_accuracy(texts, part["y"], cl).items()})
    metrics.update({"test_loss": round(loss, 4), "test_perplexity": round(math.exp(loss), 3), "n_test": len(y)})
    return metrics


def train(out_dir=None, fast: bool = False, seed: int = 0, recipe: str = "cpu") -> dict:
    r = choose_recipe(RECIPES, recipe)
    if fast:
        r = FAST
    set_seed(seed)
    device = get_device()
    data = prepare_data(fast, seed)
    vocab = caption_vocab()
    config = CaptionerConfig(vocab_size=vocab.vocab_size, channels=r.channels, emb=r.emb, hidden=r.hidden,
                             attn_dim=r.attn_dim, dropout=r.dropout)
    model = Captioner(config).to(device)
    val_batches = batches_of(data["val"], vocab)
    cfg = TrainConfig(steps=r.steps, lr=r.lr, weight_decay=1e-4, warmup=0 if fast else 100, decay=True,
                      lr_min=r.lr / 20, grad_clip=1.0, eval_every=max(1, r.steps // 6), desc=NAME)

    def eval_fn(m):
        return {"val_loss": evaluate(m, lambda mm, b: mm.loss(b), val_batches)}

    t0 = time.perf_counter()
    history = fit(model, lambda m, b: m.loss(b), batch_fn(data["train"], vocab, r.batch_size, seed, r.shift),
                  cfg, eval_fn=eval_fn)
    seconds = time.perf_counter() - t0
    model = model.cpu().half().float().to(device).eval()  # measure exactly the shipped float16 weights
    metrics = test_metrics(model, data["test"], vocab)
    metrics["final_train_loss"] = round(history.smoothed(50)[-1], 4)
    metrics["val_loss"] = round(history.evals[-1]["val_loss"], 4)
    texts, _ = model.caption(data["test"]["x"][:8], vocab)
    card = {
        "name": NAME,
        "arch": "captioner",
        "config": model.config_dict(),
        "train_command": train_command(NAME, recipe, fast, seed),
        "data": data_card("mnist", n_train=len(data["train"]["y"]), n_val=len(data["val"]["y"]),
                          n_test=len(data["test"]["y"]), bins=data["bins"].to_dict(), templates=list(TEMPLATES)),
        "recipe": {"name": "fast" if fast else recipe, **asdict(r), "optimizer": "AdamW",
                   "schedule": "warm-up 100, cosine to lr/20", "grad_clip": 1.0, "seed": seed},
        "recipes": {name: asdict(x) for name, x in RECIPES.items()},
        "metrics": metrics,
        "history": {"val": history.evals,
                    "train_loss": [round(v, 4) for v in history.smoothed(50)[:: max(1, r.steps // 100)]],
                    "train_loss_every": max(1, r.steps // 100)},
        "samples": texts,
        **run_card(model, seconds, device),
        "weights_dtype": "float16",
    }
    save_pretrained(copy.deepcopy(model).cpu().half(), NAME, card, out_dir, tokenizer=vocab)
    return card
