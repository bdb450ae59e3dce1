"""Recipe ``assistant_gpt``: a tiny base GPT and its instruction-tuned assistant (chapters 3.9, 5.14).

One run writes two entries (``python -m aigc_course.train assistant_gpt``; the names
``assistant_base`` and ``assistant_sft`` run the same recipe, so that each entry's card can name
itself in its ``train_command``):

* ``assistant_base``: a character GPT pretrained on ``assistant.tasks.pretraining_text`` (all of
  tinyshakespeare, the training Tang poems, the training translation pairs as ``English =
  Chinese`` lines, the training sums and differences as ``a + b = c`` lines; no instructions).
  Vocabulary: :class:`aigc_course.assistant.chat.ChatTokenizer` built from that text (printable
  ASCII, the 1,200 most frequent other characters, ``UNK`` and the three role tokens). The last
  5% of the text is the validation text of the pretraining loss.
* ``assistant_sft``: the base model fine-tuned (all weights) on ``make_examples("train", n_sft)``
  in the chat template, loss on the response tokens only (``chat.encode_sft``).

Model (both): the course GPT, causal, learned positions, tied embeddings; ``cpu``: 4 layers, 4
heads, width 96, block 128 (about 0.57 M parameters, 1.1 MB in float16). Optimiser: AdamW,
betas (0.9, 0.99), weight decay 0.1 on matrices, linear warm-up and cosine decay. The card
records the threads and the seconds of each stage.

Card metrics: held-out loss of each stage (pretraining: nats per character on the validation
text; SFT: response-only loss on ``make_examples("val", ...)``, for the base and the SFT model)
and the task success (``tasks.success``, greedy replies) per task on ``make_examples("test",
...)`` with the training phrasings and the held-out phrasings, for both models, measured on the
float16 weights that are shipped. The ``gpu`` recipe is a larger run of the same code.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from aigc_course.assistant.chat import ChatTokenizer, encode_sft, task_success
from aigc_course.assistant.tasks import BLEU_SUCCESS, TASKS, make_examples, pretraining_text
from aigc_course.checkpoint import load_tensors
from aigc_course.data import train_val_split
from aigc_course.models import GPT, GPTConfig
from aigc_course.pretrained import save_pretrained
from aigc_course.recipes.cards import choose_recipe, run_card, train_command
from aigc_course.runtime import get_device, set_seed
from aigc_course.text.batches import batch_fn, estimate_loss
from aigc_course.text.tokenizers import load_tokenizer_file
from aigc_course.train import TrainConfig, fit, random_batches

NAME = "assistant_gpt"
BASE, SFT = "assistant_base", "assistant_sft"


@dataclass(frozen=True)
class AssistantRecipe:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 96
    block_size: int = 128
    max_other: int = 1200  # characters beyond ASCII kept in the vocabulary
    pre_steps: int = 6000
    pre_batch: int = 32
    pre_lr: float = 2e-3
    sft_steps: int = 5000
    sft_batch: int = 32
    sft_lr: float = 2e-3
    n_sft: int = 80000  # training examples (all five tasks, training phrasings)
    n_eval: int = 20  # test examples per task and phrasing
    max_new_tokens: int = 88


RECIPES = {
    "cpu": AssistantRecipe(),
    "gpu": AssistantRecipe(n_layer=6, n_head=6, n_embd=192, block_size=160, max_other=2000, pre_steps=8000, pre_batch=64,
                           sft_steps=4000, sft_batch=64, n_sft=60000, n_eval=200),
}
FAST = AssistantRecipe(n_layer=1, n_head=2, n_embd=16, pre_steps=3, pre_batch=4, sft_steps=3, sft_batch=4,
                       n_sft=20, n_eval=1, max_new_tokens=4)


def sft_loss(model, batch) -> torch.Tensor:
    """Mean cross-entropy on the trained (not -100) targets; the batch is cut to its longest row."""
    x, y = batch
    width = int((y != -100).nonzero()[:, 1].max()) + 1 if (y != -100).any() else 1
    logits = model(x[:, :width])  # (B, width, V)
    return F.cross_entropy(logits.flatten(0, 1), y[:, :width].flatten(), ignore_index=-100)


@torch.no_grad()
def sft_eval_loss(model, x: torch.Tensor, y: torch.Tensor, batch_size: int = 64) -> float:
    """Response-only loss over all of (x, y), weighted by the number of trained tokens."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(x), batch_size):
        n = int((y[i:i + batch_size] != -100).sum())
        total += float(sft_loss(model, (x[i:i + batch_size], y[i:i + batch_size]))) * n
        count += n
    return total / max(1, count)


def success_tables(model, tok, r: AssistantRecipe, seed: int) -> dict:
    """Task success per task on test examples, training and held-out phrasings (greedy)."""
    out = {}
    for phrasing in ("train", "heldout"):
        examples = make_examples("test", r.n_eval * len(TASKS), seed=seed, phrasing=phrasing)
        table = task_success(model, tok, examples, max_new_tokens=r.max_new_tokens)
        out[phrasing] = {k: round(v, 4) for k, v in table.items()}
    return out


def _rounded(model) -> GPT:
    """A float32 copy of ``model`` through float16: exactly the weights that are shipped."""
    return copy.deepcopy(model).cpu().half().float().eval()


def _load_base(model, tok, folder: Path) -> tuple[float, float]:
    """Load ``folder/assistant_base`` into ``model``; return its card's (train seconds, final loss)."""
    card = json.loads((folder / f"{BASE}.json").read_text(encoding="utf-8"))
    if card["config"] != model.config_dict() or load_tokenizer_file(folder / f"{BASE}.tokenizer.json").to_dict() != tok.to_dict():
        raise ValueError(f"{folder} holds an {BASE} of other settings: train without base_from.")
    tensors, meta = load_tensors(folder / f"{BASE}.safetensors")
    for key, source in json.loads(meta.get("tied", "{}")).items():
        tensors[key] = tensors[source]
    model.load_state_dict(tensors)  # float16 values into float32 parameters
    return card["train_seconds"], card["metrics"]["pretrain_final_train_loss"]


def train(out_dir=None, fast: bool = False, seed: int = 0, recipe: str = "cpu", base_from=None) -> dict:
    """Pretrain, fine-tune, measure, save both entries. ``base_from``: a folder with the
    ``assistant_base`` that this recipe (same settings and seed) wrote: its pretraining is
    deterministic, so it is loaded instead of recomputed (its card gives the time and loss)."""
    r = choose_recipe(RECIPES, recipe)  # an unknown name fails in fast mode too
    r = FAST if fast else r
    set_seed(seed)
    device = get_device()
    text = pretraining_text(seed=seed)
    tok = ChatTokenizer.from_text(text, max_other=r.max_other)
    train_text, val_text = train_val_split(text if not fast else text[:200_000], 0.05)
    train_ids, val_ids = tok.encode_tensor(train_text), tok.encode_tensor(val_text)
    cfg = GPTConfig(tok.vocab_size, r.block_size, r.n_layer, r.n_head, r.n_embd, bias=False)
    model = GPT(cfg).to(device)

    # --- stage 1: pretraining
    opt = model.configure_optimizer(r.pre_lr, 0.1, betas=(0.9, 0.99))
    tcfg = TrainConfig(steps=r.pre_steps, lr=r.pre_lr, lr_min=r.pre_lr / 10, decay=True,
                       warmup=0 if fast else 100, desc=BASE)
    t0 = time.perf_counter()
    if base_from is None:
        pre_hist = fit(model, lambda m, b: m(*b)[1], batch_fn(train_ids, r.block_size, r.pre_batch, seed=seed),
                       tcfg, optimizer=opt)
        pre_seconds, pre_final = time.perf_counter() - t0, pre_hist.smoothed(50)[-1]
    else:
        pre_seconds, pre_final = _load_base(model, tok, Path(base_from))
    base = _rounded(model)
    n_batches, batch = (2, 4) if fast else (50, 16)
    pre_val = estimate_loss(base, val_ids, r.block_size, batch, n_batches, seed=0)

    # --- stage 2: supervised fine-tuning, loss on the response only
    x, y = encode_sft(tok, make_examples("train", r.n_sft, seed=seed), r.block_size)
    xv, yv = encode_sft(tok, make_examples("val", 20 if fast else 500, seed=seed), r.block_size)
    sft = copy.deepcopy(model)
    opt = sft.configure_optimizer(r.sft_lr, 0.1, betas=(0.9, 0.99))
    scfg = TrainConfig(steps=r.sft_steps, lr=r.sft_lr, lr_min=r.sft_lr / 10, decay=True,
                       warmup=0 if fast else 50, desc=SFT)
    t0 = time.perf_counter()
    sft_hist = fit(sft, sft_loss, random_batches(x, y, batch_size=r.sft_batch,
                                                 generator=torch.Generator().manual_seed(seed)), scfg, optimizer=opt)
    sft_seconds = time.perf_counter() - t0
    tuned = _rounded(sft)

    # --- measurements on the float16 weights
    losses = {"pretrain_val_loss": round(pre_val, 4),
              "pretrain_final_train_loss": round(pre_final, 4),
              "sft_val_loss_base": round(sft_eval_loss(base, xv, yv), 4),
              "sft_val_loss": round(sft_eval_loss(tuned, xv, yv), 4),
              "sft_final_train_loss": round(sft_hist.smoothed(50)[-1], 4)}
    t0 = time.perf_counter()
    success = {"base": success_tables(base, tok, r, seed), "sft": success_tables(tuned, tok, r, seed)}
    eval_seconds = time.perf_counter() - t0
    common = {
        "data": {"dataset": "assistant.tasks (tinyshakespeare, tang_poems, en_zh; made by code)",
                 "pretraining_chars": len(text), "vocab_size": tok.vocab_size, "sft_examples": len(x),
                 "split_seed": "tasks.SPLIT_SEED", "seed": seed},
        "recipe": {"name": "fast" if fast else recipe, **asdict(r), "seed": seed,
                   **({"base_loaded_from_earlier_run": True} if base_from else {}),
                   "optimizer": "AdamW betas (0.9, 0.99), weight decay 0.1 on matrices only",
                   "schedule": "linear warm-up, cosine decay to lr / 10"},
        "weights_dtype": "float16",
        "evaluation": {"split": "test", "per_task_and_phrasing": r.n_eval, "decoding": "greedy, never the unknown character",
                       "max_new_tokens": r.max_new_tokens, "seconds": round(eval_seconds, 1),
                       "success": "tasks.success: exact match (arith, string), char BLEU >= "
                                  f"{BLEU_SUCCESS * 100:.0f} (translate), form and head (poem), "
                                  "speaker classifier (persona)"},
    }
    base_card = {"name": BASE, "arch": "gpt", "config": base.config_dict(),
                 "train_command": train_command(BASE, recipe, fast, seed), **common,
                 "metrics": {"pretrain_val_loss": losses["pretrain_val_loss"],
                             "pretrain_final_train_loss": losses["pretrain_final_train_loss"],
                             "sft_val_loss": losses["sft_val_loss_base"], "unit": "nats per token",
                             "success_train_phrasing": success["base"]["train"],
                             "success_heldout_phrasing": success["base"]["heldout"]},
                 **run_card(base, pre_seconds, device)}
    sft_card = {"name": SFT, "arch": "gpt", "config": tuned.config_dict(),
                "train_command": train_command(SFT, recipe, fast, seed), **common,
                "metrics": {**losses, "unit": "nats per token",
                            "success_train_phrasing": success["sft"]["train"],
                            "success_heldout_phrasing": success["sft"]["heldout"],
                            "base_success_train_phrasing": success["base"]["train"],
                            "base_success_heldout_phrasing": success["base"]["heldout"]},
                **run_card(tuned, sft_seconds, device), "pretrain_seconds": round(pre_seconds, 1)}
    save_pretrained(copy.deepcopy(base).half(), BASE, base_card, out_dir, tokenizer=tok)
    save_pretrained(copy.deepcopy(tuned).half(), SFT, sft_card, out_dir, tokenizer=tok)
    return sft_card
