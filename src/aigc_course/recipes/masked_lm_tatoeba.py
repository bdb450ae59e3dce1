"""Recipe ``masked_lm_tatoeba``: the word-level mini BERT of chapter 5.5, shipped for chapter 6.3.

Chapter 5.5 trains the masked language model inline; chapter 6.3 (education and training) uses
it to write cloze exercises, so a copy is shipped to keep that chapter fast.

Data: the English side of the course's Tatoeba English-Chinese pairs, split into words with
:func:`aigc_course.text.vocab.tokenize_en`; sentences of 3-16 tokens; a seeded shuffle holds out
2,000 sentences (:func:`tatoeba_split`). Words seen fewer than three times in training become
``<unk>``; ``[MASK]`` is the last id of the vocabulary.

* ``cpu`` (the shipped weights): 4 layers, 4 heads, 96 wide (narrower than the 128 of chapter
  5.5, so that the float16 file stays under 2 MB), dropout 0.1, batch 64, AdamW lr 1e-3 with
  100 warm-up steps and cosine decay, weight decay 0.01, 1,500 steps of BERT's 15% / 80-10-10
  masking. Metrics: held-out masked-token top-1 / top-5 accuracy with every chosen token
  replaced by ``[MASK]`` (p = 0.15, seed 123), measured on the float16 weights as shipped.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass

import torch

from aigc_course.data import load_en_zh
from aigc_course.models import MaskedLM, MaskedLMConfig
from aigc_course.models.masked_lm import bert_mask_tokens, masked_accuracy
from aigc_course.pretrained import save_pretrained
from aigc_course.recipes.cards import choose_recipe, data_card, run_card, train_command
from aigc_course.runtime import get_device, set_seed
from aigc_course.text.masking import IGNORE_INDEX, mask_tokens
from aigc_course.text.vocab import PAD, Vocab, tokenize_en
from aigc_course.train import TrainConfig, fit, random_batches

NAME = "masked_lm_tatoeba"
MASK_TOKEN = "[MASK]"
MAX_LEN = 16


@dataclass
class MaskedLMRecipe:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 96
    dropout: float = 0.1
    batch_size: int = 64
    steps: int = 1500
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.01


RECIPES = {"cpu": MaskedLMRecipe()}
FAST = MaskedLMRecipe(n_layer=1, n_head=2, n_embd=32, steps=20, warmup=2)


def tatoeba_split(n_val: int = 2000, seed: int = 0) -> tuple[list[list[str]], list[list[str]]]:
    """(train, held-out) sentences as lists of words: 3-16 tokens, seeded shuffle, ``n_val`` held out."""
    sentences = [w for w in (tokenize_en(p.en) for p in load_en_zh()) if 3 <= len(w) <= MAX_LEN]
    perm = torch.randperm(len(sentences), generator=torch.Generator().manual_seed(seed)).tolist()
    return [sentences[i] for i in perm[n_val:]], [sentences[i] for i in perm[:n_val]]


def build_vocab(train: list[list[str]], min_freq: int = 3) -> Vocab:
    """The course's word :class:`Vocab` of the training sentences, with ``[MASK]`` as the last id."""
    base = Vocab.build(train, lang="en", min_freq=min_freq)
    return Vocab(base.tokens + [MASK_TOKEN], lang="en")


def pad_batch(seqs: list[list[int]]) -> torch.Tensor:
    """Right-pad id lists with ``<pad>`` (0) to the longest: a (B, T) tensor."""
    T = max(len(s) for s in seqs)
    return torch.tensor([s + [PAD] * (T - len(s)) for s in seqs])


def heldout_masks(val_ids: list[list[int]], mask_id: int, seed: int = 123):
    """The fixed evaluation blanks: 15% of the real tokens, all replaced by [MASK] (the plain rule)."""
    x = pad_batch(val_ids)
    inputs, targets = mask_tokens(x, mask_id, 0.15, generator=torch.Generator().manual_seed(seed))
    targets = targets.masked_fill(x == PAD, IGNORE_INDEX)
    return torch.where(x == PAD, x, inputs), targets


@torch.no_grad()
def top5_accuracy(model: MaskedLM, inputs: torch.Tensor, targets: torch.Tensor) -> float:
    model.eval()
    logits = model(inputs.to(model.lm_head.weight.device)).cpu()  # (N, T, V)
    scored = targets != IGNORE_INDEX
    top5 = logits[scored].topk(5, dim=-1).indices
    return float((top5 == targets[scored][:, None]).any(-1).float().mean())


def train(out_dir=None, fast: bool = False, seed: int = 0, recipe: str = "cpu") -> dict:
    r = choose_recipe(RECIPES, recipe)  # an unknown name fails in fast mode too
    r = FAST if fast else r
    set_seed(seed)
    device = get_device()
    train_s, val_s = tatoeba_split()
    vocab = build_vocab(train_s)
    mask_id = len(vocab) - 1
    train_ids = [vocab.encode(s) for s in train_s]
    val_ids = [vocab.encode(s) for s in (val_s[:200] if fast else val_s)]
    val_in, val_tgt = heldout_masks(val_ids, mask_id)
    config = MaskedLMConfig(vocab_size=len(vocab), block_size=MAX_LEN, n_layer=r.n_layer, n_head=r.n_head,
                            n_embd=r.n_embd, dropout=r.dropout, mask_id=mask_id, pad_id=PAD)
    model = MaskedLM(config).to(device)

    def batch(step: int):
        gen = torch.Generator().manual_seed(seed * 100_000 + step)
        rows = random_batches(torch.arange(len(train_ids)), batch_size=r.batch_size, generator=gen)(step).tolist()
        return bert_mask_tokens(pad_batch([train_ids[i] for i in rows]), mask_id, len(vocab), 0.15,
                                special_ids=(PAD,), generator=gen)

    cfg = TrainConfig(steps=r.steps, lr=r.lr, weight_decay=r.weight_decay, warmup=r.warmup, decay=True,
                      eval_every=max(1, r.steps // 3), desc=NAME)
    t0 = time.perf_counter()
    history = fit(model, lambda m, b: m.masked_loss(*b), batch, cfg,
                  eval_fn=lambda m: {"heldout_top1": masked_accuracy(m, val_in, val_tgt)})
    seconds = time.perf_counter() - t0
    model = model.cpu().half().float().to(device).eval()  # measure exactly the shipped float16 weights
    card = {
        "name": NAME,
        "arch": "masked_lm",
        "config": model.config_dict(),
        "train_command": train_command(NAME, recipe, fast, seed),
        "data": data_card("en_zh", side="English", tokenizer="aigc_course.text.vocab.tokenize_en",
                          split=f"sentences of 3-{MAX_LEN} tokens; {len(train_s)} train / {len(val_s)} held out "
                                "(seeded shuffle, seed 0)"),
        "recipe": {"name": "fast" if fast else recipe, **asdict(r), "masking": "BERT 15%, 80/10/10",
                   "optimizer": "AdamW", "schedule": "linear warm-up, cosine decay", "seed": seed},
        "metrics": {"heldout_top1": round(masked_accuracy(model, val_in, val_tgt), 4),
                    "heldout_top5": round(top5_accuracy(model, val_in, val_tgt), 4),
                    "final_train_loss": round(history.smoothed(50)[-1], 4),
                    "n_heldout_blanks": int((val_tgt != IGNORE_INDEX).sum()),
                    "estimate": "held-out sentences, 15% of tokens replaced by [MASK] (seed 123)"},
        **run_card(model, seconds, device),
        "weights_dtype": "float16",
    }
    save_pretrained(copy.deepcopy(model).cpu().half(), NAME, card, out_dir, tokenizer=vocab)
    return card
