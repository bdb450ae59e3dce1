"""Recipe ``seq2seq_en_zh``: English to Chinese translation with a GRU + additive attention (5.4).

Data: the Tatoeba pairs of :func:`aigc_course.data.load_en_zh` (CC BY 2.0 FR) with at most 10
English tokens whose Chinese side is not detected as traditional script
(:func:`aigc_course.text.translation.split_pairs`, seed 0): about 11,900 training pairs, 476
validation and 939 test pairs, after removing held-out pairs whose English sentence occurs in
training. Source: lower-cased English words; target: Chinese characters; vocabularies of the
tokens seen at least twice in training.

Two recipes (``--recipe cpu|gpu``):

* ``cpu`` (the shipped weights): emb 128, hidden 256, one layer, bidirectional encoder, dropout
  0.2, batch 64, Adam lr 2e-3 with cosine decay, 6 epochs. Measured on a shared 2-core CPU: see
  the card (``train_seconds``, test BLEU with greedy decoding and beam search of width 4).
* ``gpu`` (the full recipe; it cannot be run on the course's CPU machine and was NOT run here):
  emb 256, hidden 512, two layers, dropout 0.3, batch 128, lr 1e-3, 30 epochs on the same split.
  Target: a lower test perplexity than the CPU recipe and a test BLEU (beam 4) of about 25.

Metrics on the test set: mean cross-entropy per target token (teacher forcing) and its
perplexity, corpus BLEU with one token per Chinese character (sacrebleu's ``tokenize="zh"``,
computed by :func:`aigc_course.metrics.text.corpus_bleu`). Weights are stored in float16 (half
the file); the metrics are measured after that rounding, on exactly the shipped weights.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass

import torch

from aigc_course.data import load_en_zh
from aigc_course.metrics.text import corpus_bleu
from aigc_course.models.seq2seq import Seq2Seq, Seq2SeqConfig
from aigc_course.pretrained import save_pretrained
from aigc_course.recipes.cards import choose_recipe, data_card, run_card, train_command
from aigc_course.runtime import get_device, set_seed
from aigc_course.text.translation import batch_fn, collate, encode_pairs, split_pairs, translate
from aigc_course.text.vocab import Vocab, tokenize_en, tokenize_zh
from aigc_course.train import TrainConfig, evaluate, fit

NAME = "seq2seq_en_zh"
MAX_EN_WORDS, N_TEST, N_VAL, MIN_FREQ, MAX_LEN = 10, 1000, 500, 2, 40


@dataclass
class Recipe:
    emb: int
    hidden: int
    n_layer: int
    dropout: float
    batch_size: int
    lr: float
    epochs: int
    target: str = ""


RECIPES = {
    "cpu": Recipe(emb=128, hidden=256, n_layer=1, dropout=0.2, batch_size=64, lr=2e-3, epochs=6,
                  target="minutes on a 2-core CPU; the shipped weights"),
    "gpu": Recipe(emb=256, hidden=512, n_layer=2, dropout=0.3, batch_size=128, lr=1e-3, epochs=30,
                  target="not run here; target: test perplexity below the CPU recipe's, BLEU (beam 4) ~25"),
}
FAST = Recipe(emb=32, hidden=64, n_layer=1, dropout=0.0, batch_size=16, lr=2e-3, epochs=1)


def prepare_data(fast: bool = False, seed: int = 0):
    """The split, the two vocabularies and the encoded (src ids, tgt ids) examples of each part."""
    split = split_pairs(load_en_zh(), n_test=N_TEST, n_val=N_VAL, seed=seed, max_en_words=MAX_EN_WORDS,
                        simplified_only=True)
    if fast:  # a few hundred pairs: checks the recipe end to end in seconds
        split.train, split.val, split.test = split.train[:400], split.val[:32], split.test[:32]
    src_vocab = Vocab.build([tokenize_en(p.en) for p in split.train], "en", min_freq=MIN_FREQ)
    tgt_vocab = Vocab.build([tokenize_zh(p.zh) for p in split.train], "zh", min_freq=MIN_FREQ)
    return split, src_vocab, tgt_vocab


def test_metrics(model: Seq2Seq, pairs, src_vocab: Vocab, tgt_vocab: Vocab, beam_size: int = 4) -> dict:
    """Teacher-forced loss / perplexity and corpus BLEU (greedy and beam) on ``pairs``."""
    examples = encode_pairs(pairs, src_vocab, tgt_vocab)
    batches = [collate(examples[i : i + 128]) for i in range(0, len(examples), 128)]
    # token-weighted mean: sum of per-batch losses times their token counts
    n_tok = [int((b["tgt_out"] != 0).sum()) for b in batches]
    losses = [evaluate(model, lambda m, b: m.loss(b), [b]) for b in batches]
    loss = sum(lo * n for lo, n in zip(losses, n_tok)) / sum(n_tok)
    refs = [p.zh for p in pairs]
    english = [p.en for p in pairs]
    greedy = translate(model, english, src_vocab, tgt_vocab, beam_size=1, max_len=MAX_LEN)
    beam = translate(model, english, src_vocab, tgt_vocab, beam_size=beam_size, max_len=MAX_LEN)
    return {
        "test_loss": round(loss, 4),
        "test_perplexity": round(math.exp(loss), 2),
        "bleu_greedy": round(corpus_bleu(greedy, [refs], tokenize="zh").score, 2),
        f"bleu_beam{beam_size}": round(corpus_bleu(beam, [refs], tokenize="zh").score, 2),
        "n_test": len(pairs),
    }


def train(out_dir=None, fast: bool = False, seed: int = 0, recipe: str = "cpu") -> dict:
    r = choose_recipe(RECIPES, recipe)
    if fast:
        r = FAST
    set_seed(seed)
    device = get_device()
    split, src_vocab, tgt_vocab = prepare_data(fast, seed)
    train_ex = encode_pairs(split.train, src_vocab, tgt_vocab)
    val_batches = [collate(encode_pairs(split.val, src_vocab, tgt_vocab)[i : i + 128])
                   for i in range(0, len(split.val), 128)]
    steps_per_epoch = len(train_ex) // r.batch_size
    steps = 20 if fast else r.epochs * steps_per_epoch
    config = Seq2SeqConfig(src_vocab=src_vocab.vocab_size, tgt_vocab=tgt_vocab.vocab_size, emb=r.emb,
                           hidden=r.hidden, n_layer=r.n_layer, dropout=r.dropout, bidirectional=True)
    model = Seq2Seq(config).to(device)
    cfg = TrainConfig(steps=steps, lr=r.lr, decay=True, lr_min=r.lr / 20, grad_clip=1.0,
                      eval_every=steps_per_epoch, desc=NAME)
    optimizer = torch.optim.Adam(model.parameters(), lr=r.lr)

    def eval_fn(m):
        return {"val_loss": evaluate(m, lambda mm, b: mm.loss(b), val_batches)}

    t0 = time.perf_counter()
    history = fit(model, lambda m, b: m.loss(b), batch_fn(train_ex, r.batch_size, seed), cfg,
                  optimizer=optimizer, eval_fn=eval_fn)
    seconds = time.perf_counter() - t0
    # Ship float16 weights; measure the model exactly as shipped (rounded to float16).
    model = model.cpu().half().float().to(device).eval()
    metrics = test_metrics(model, split.test, src_vocab, tgt_vocab)
    metrics["final_train_loss"] = round(history.smoothed(50)[-1], 4)
    metrics["val_loss"] = round(history.evals[-1]["val_loss"], 4)
    examples = [p.en for p in split.test[:8]]
    card = {
        "name": NAME,
        "arch": "seq2seq",
        "config": model.config_dict(),
        "train_command": train_command(NAME, recipe, fast, seed),
        "data": data_card("en_zh", license="CC BY 2.0 FR (Tatoeba)", max_en_words=MAX_EN_WORDS, simplified_only=True,
                          n_train=len(split.train), n_val=len(split.val), n_test=len(split.test),
                          removed_duplicates=split.removed_duplicates,
                          removed_traditional=split.removed_traditional, min_freq=MIN_FREQ),
        "recipe": {"name": "fast" if fast else recipe, **asdict(r), "steps": steps, "optimizer": "Adam",
                   "schedule": "cosine to lr/20", "grad_clip": 1.0, "seed": seed},
        "metrics": metrics,
        "history": {"val": history.evals,
                    "train_loss": [round(v, 4) for v in history.smoothed(50)[:: max(1, steps // 100)]],
                    "train_loss_every": max(1, steps // 100)},
        "samples": dict(zip(examples, translate(model, examples, src_vocab, tgt_vocab, beam_size=4))),
        **run_card(model, seconds, device),
        "weights_dtype": "float16",
    }
    save_pretrained(copy.deepcopy(model).cpu().half(), NAME, card, out_dir,
                    tokenizer={"src": src_vocab, "tgt": tgt_vocab})
    return card
