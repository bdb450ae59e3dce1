"""Recipe ``copy_gpt``: product copy with controllable attributes, from a template grammar (chapter 6.1).

There is no open data set of product copy for Fashion-MNIST items, so the training corpus is
*made* here from a documented template grammar, and chapter 6.1 ("Marketing and advertising")
says so openly. A copy has three attributes, each written as a control token in front of the text
(control codes as in CTRL, Keskar et al., 2019):

* ``category``: one of the ten Fashion-MNIST classes; the copy names the item with one of the
  class's nouns (:data:`NOUNS`);
* ``tone``: ``playful``, ``premium`` or ``practical``; each tone has its own openers, adjectives
  and calls to action (:data:`TONES`), whose words are the tone's markers;
* ``length``: ``short`` (an opener: one sentence) or ``long`` (an opener, a feature sentence and a
  call to action: three sentences, four with a risky claim).

With probability ``risky_share`` a long copy also gets a claim that a legal review would strike
(:data:`RISKY_CLAIMS`): scraped ad copy contains such claims, and chapter 6.1's banned-word filter
has to catch the ones the model learns to repeat. :func:`copy_checks` measures what a brief asked
for: the category named (and no other), the tone's markers (and no other tone's), the length.

The recipe: :func:`make_corpus` writes 40 copies for each of the 60 briefs (10 categories x 3
tones x 2 lengths), 5% of the long ones with a risky claim. Each sequence is
``<bos> cat=.. tone=.. len=.. words... <eos>``; the loss is on the copy only. Model: the course
GPT, 2 layers, 4 heads, width 64, block 40 (0.11 M parameters); AdamW, lr 3e-3 with warm-up and
cosine decay, batch 64, 600 steps, one CPU thread. Weights in float16; the metrics are measured on
the shipped weights: 600 copies (10 per brief) sampled at temperature 1, checked for category,
tone and length, and the share not found in the training corpus (``novel``).
"""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from aigc_course.data import FASHION_CLASSES
from aigc_course.models import GPT, GPTConfig
from aigc_course.pretrained import save_pretrained
from aigc_course.recipes.cards import run_card, train_command
from aigc_course.runtime import get_device, set_seed
from aigc_course.text.decoding import gpt_next_logits, sample
from aigc_course.text.vocab import BOS, EOS, PAD, Vocab, tokenize_en
from aigc_course.train import TrainConfig, fit, random_batches

NAME = "copy_gpt"
BLOCK_SIZE = 40
CATEGORIES = FASHION_CLASSES
NOUNS = {
    "T-shirt/top": ("tee", "top", "tank"), "Trouser": ("trousers", "chinos", "pants"),
    "Pullover": ("pullover", "jumper", "sweater"), "Dress": ("dress", "sundress", "gown"),
    "Coat": ("coat", "overcoat", "parka"), "Sandal": ("sandals", "slides"),
    "Shirt": ("shirt", "blouse", "oxford"), "Sneaker": ("sneakers", "trainers", "kicks"),
    "Bag": ("bag", "tote", "handbag"), "Ankle boot": ("boots", "booties"),
}
FEATURES = {
    "T-shirt/top": ("soft cotton", "a relaxed fit", "breathable jersey"),
    "Trouser": ("a tapered leg", "stretch twill", "deep pockets"),
    "Pullover": ("chunky knit", "warm merino", "ribbed cuffs"),
    "Dress": ("a flowing skirt", "light linen", "a fitted waist"),
    "Coat": ("a quilted lining", "wool blend", "a storm collar"),
    "Sandal": ("cushioned straps", "a cork sole", "an open toe"),
    "Shirt": ("crisp poplin", "a button collar", "a tailored cut"),
    "Sneaker": ("a grippy sole", "mesh uppers", "foam cushioning"),
    "Bag": ("roomy pockets", "vegan leather", "a padded strap"),
    "Ankle boot": ("a block heel", "suede uppers", "a side zip"),
}
TONES = {  # openers ({adj}, {noun}), adjectives, calls to action
    "playful": (("meet your new favourite {noun} !", "say hello to the {adj} {noun} !",
                 "ready , set , {noun} !"), ("fun", "cheerful", "bold"),
                ("grab yours today !", "go on , treat yourself !", "your wardrobe will thank you !")),
    "premium": (("introducing the {adj} {noun} .", "the {adj} {noun} , refined .",
                 "discover our {adj} {noun} ."), ("timeless", "elegant", "exquisite"),
                ("discover the collection .", "crafted to last .", "elevate every day .")),
    "practical": (("the {noun} that works as hard as you do .", "a {adj} {noun} for every day .",
                   "your everyday {noun} ."), ("durable", "versatile", "washable"),
                  ("order now .", "available in all sizes .", "free returns within thirty days .")),
}
TONE_NAMES = tuple(TONES)
LENGTHS = ("short", "long")
FEATURE_FRAMES = ("made with {f} .", "it comes with {f} .", "expect {f} and {g} .")
RISKY_CLAIMS = ("guaranteed to never wear out .", "the best {noun} in the world .",
                "a miracle fabric that cures back pain .")
BANNED_WORDS = ("guaranteed", "best", "miracle", "cures", "never")
LENGTH_SENTENCES = {"short": (1, 1), "long": (3, 5)}  # allowed number of sentences (. ! ? end one)


@dataclass(frozen=True)
class CopyBrief:
    category: str
    tone: str
    length: str

    def __post_init__(self):
        for value, allowed, name in ((self.category, CATEGORIES, "category"), (self.tone, TONE_NAMES, "tone"),
                                     (self.length, LENGTHS, "length")):
            if value not in allowed:
                raise ValueError(f"Unknown {name} {value!r}: use one of {list(allowed)}.")

    def control_tokens(self) -> list[str]:
        return [f"cat={self.category}", f"tone={self.tone}", f"len={self.length}"]


def write_copy(brief: CopyBrief, rng: random.Random, risky_share: float = 0.0) -> str:
    """One copy from the grammar: an opener; for a long copy also a feature sentence, maybe a risky
    claim, and a call to action. Words are separated by spaces (punctuation is a word of its own)."""
    openers, adjectives, ctas = TONES[brief.tone]
    noun = rng.choice(NOUNS[brief.category])
    parts = [rng.choice(openers).format(adj=rng.choice(adjectives), noun=noun)]
    if brief.length == "long":
        f, g = rng.sample(FEATURES[brief.category], 2)
        parts.append(rng.choice(FEATURE_FRAMES).format(f=f, g=g))
        if rng.random() < risky_share:
            parts.append(rng.choice(RISKY_CLAIMS).format(noun=noun))
        parts.append(rng.choice(ctas))
    return " ".join(parts)


def all_briefs() -> list[CopyBrief]:
    return [CopyBrief(c, t, n) for c in CATEGORIES for t in TONE_NAMES for n in LENGTHS]


def make_corpus(per_brief: int = 40, risky_share: float = 0.05, seed: int = 0) -> list[tuple[CopyBrief, str]]:
    """``per_brief`` grammar copies for each of the 60 briefs (10 categories x 3 tones x 2 lengths)."""
    rng = random.Random(seed)
    return [(b, write_copy(b, rng, risky_share)) for b in all_briefs() for _ in range(per_brief)]


def build_vocab(corpus: list[tuple[CopyBrief, str]]) -> Vocab:
    """The words of the corpus and every control token (so that any brief can be asked for)."""
    return Vocab.build([b.control_tokens() for b in all_briefs()] + [text.split() for _, text in corpus])


def encode_corpus(corpus, vocab: Vocab, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets), each (N, block_size): ``<bos> controls copy <eos> <pad>...``; the targets
    are the inputs shifted by one, with -100 (no loss) on the controls and the padding."""
    rows, targets = [], []
    for brief, text in corpus:
        ids = [BOS] + vocab.encode(brief.control_tokens() + text.split()) + [EOS]
        if len(ids) > block_size + 1:
            raise ValueError(f"A copy of {len(ids)} tokens does not fit block_size {block_size}: raise it.")
        y = ids[1:] + [-100] * (block_size + 1 - len(ids))
        y[:3] = [-100] * 3  # the controls are given, not predicted
        rows.append(ids[:-1] + [PAD] * (block_size + 1 - len(ids)))
        targets.append(y)
    return torch.tensor(rows), torch.tensor(targets)


def copy_loss(model, batch) -> torch.Tensor:
    x, y = batch
    logits = model(x)  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100)


@torch.no_grad()
def generate_copy(model, vocab: Vocab, briefs: list[CopyBrief], temperature: float = 1.0, top_k: int | None = None,
                  generator: torch.Generator | None = None) -> list[str | None]:
    """One copy per brief (words joined by spaces); None where no ``<eos>`` came within the block."""
    prompt = torch.tensor([[BOS] + vocab.encode(b.control_tokens()) for b in briefs])  # (B, 4)
    n_new = model.config.block_size - prompt.shape[1]
    ids = sample(gpt_next_logits(model), prompt, n_new, temperature, top_k, generator=generator)
    out = []
    for row in ids[:, prompt.shape[1]:].tolist():
        out.append(" ".join(vocab.decode_tokens(row[:row.index(EOS)])) if EOS in row else None)
    return out


def mentioned(text: str, table: dict) -> set[str]:
    """The keys of ``table`` (category -> nouns, or tone -> markers) whose words occur in ``text``."""
    words = set(tokenize_en(text))
    return {key for key, vocab in table.items() if words & set(vocab)}


def _words(strings) -> set[str]:
    return {w for s in strings for w in tokenize_en(s.format(adj="", noun="", f="", g=""))}


def _tone_words(tone: str) -> set[str]:
    return _words(s for part in TONES[tone] for s in part)


_SHARED = _words(FEATURE_FRAMES + RISKY_CLAIMS + tuple(f for fs in FEATURES.values() for f in fs))
# A tone's markers: its words that no other tone and no other part of the grammar uses
# ("meet", "bold", "timeless", "order", ...).
TONE_MARKERS = {tone: tuple(sorted(_tone_words(tone) - _SHARED
                                   - set().union(*(_tone_words(o) for o in TONES if o != tone))))
                for tone in TONES}


def copy_checks(brief: CopyBrief, text: str | None, banned: tuple[str, ...] = BANNED_WORDS) -> dict:
    """What the brief asked for, checked on one copy: category, tone, length, banned words."""
    if text is None:
        return {"finished": False, "category": False, "tone": False, "length": False, "banned": False}
    n_sentences = sum(w in ".!?" for w in tokenize_en(text.replace("...", ".")))
    lo, hi = LENGTH_SENTENCES[brief.length]
    return {"finished": True,
            "category": mentioned(text, NOUNS) == {brief.category},
            "tone": mentioned(text, TONE_MARKERS) == {brief.tone},
            "length": lo <= n_sentences <= hi,
            "banned": bool(set(tokenize_en(text)) & set(banned))}


def copy_report(briefs: list[CopyBrief], copies: list[str | None], corpus_texts: set[str]) -> dict:
    """Shares over the copies: finished, category / tone / length as asked, banned words, novel
    (finished and not a training copy), and ``all_ok`` (finished, all three attributes as asked)."""
    if len(briefs) != len(copies) or not copies:
        raise ValueError(f"Need one copy per brief (got {len(briefs)} briefs, {len(copies)} copies).")
    checks = [copy_checks(b, t) for b, t in zip(briefs, copies)]
    n = len(checks)
    report = {key: sum(c[key] for c in checks) / n for key in checks[0]}
    report["all_ok"] = sum(c["finished"] and c["category"] and c["tone"] and c["length"] for c in checks) / n
    report["novel"] = sum(t is not None and t not in corpus_texts for t in copies) / n
    return report


# ---------------------------------------------------------------- the recipe
def model_config(vocab_size: int, fast: bool = False) -> GPTConfig:
    return GPTConfig(vocab_size=vocab_size, block_size=BLOCK_SIZE, n_layer=1 if fast else 2, n_head=4,
                     n_embd=32 if fast else 64)


def train(out_dir=None, fast: bool = False, seed: int = 0) -> dict:
    set_seed(seed)
    device = get_device()
    corpus = make_corpus(per_brief=40, risky_share=0.05, seed=seed)
    vocab = build_vocab(corpus)
    x, y = encode_corpus(corpus, vocab, BLOCK_SIZE)
    model = GPT(model_config(len(vocab), fast)).to(device)
    steps, batch_size = (20, 16) if fast else (600, 64)
    cfg = TrainConfig(steps=steps, lr=3e-3, warmup=0 if fast else 50, decay=True, desc=NAME)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    history = fit(model, copy_loss, random_batches(x, y, batch_size=batch_size, generator=g), cfg)
    seconds = time.perf_counter() - t0
    model = model.cpu().half().float().to(device).eval()  # measure exactly the shipped float16 weights
    briefs = [b for b in all_briefs() for _ in range(1 if fast else 10)]
    copies = generate_copy(model, vocab, briefs, temperature=1.0, generator=torch.Generator().manual_seed(seed + 1))
    report = copy_report(briefs, copies, {t for _, t in corpus})
    card = {
        "name": NAME,
        "arch": "gpt",
        "config": model.config_dict(),
        "train_command": train_command(NAME, fast=fast, seed=seed),
        "data": {"dataset": "synthetic product copy (aigc_course.recipes.copy_gpt.make_corpus)",
                 "copies": len(corpus), "per_brief": 40, "risky_share": 0.05, "seed": seed},
        "recipe": {"steps": steps, "batch_size": batch_size, "lr": cfg.lr, "schedule": "cosine", "seed": seed},
        "weights_dtype": "float16",
        "metrics": {**{k: round(v, 4) for k, v in report.items()}, "n_copies": len(copies),
                    "sampling": "temperature 1.0", "final_train_loss": round(history.smoothed(50)[-1], 4)},
        **run_card(model, seconds, device),
    }
    save_pretrained(copy.deepcopy(model).cpu().half(), NAME, card, out_dir, tokenizer=vocab)
    return card
