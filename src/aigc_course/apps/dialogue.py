"""NPC dialogue: persona prompts, a speaker classifier that checks them, and guard rails (chapter 6.2).

Taught in chapter 6.2 ("Games and entertainment"). A non-player character (NPC) must keep its
voice. The chapter measures that with the course's Shakespeare GPT:

1. :func:`speeches` cuts tinyshakespeare into (speaker, speech) pairs (a speech is the block
   after a line ``NAME:``, up to the next blank line);
2. :func:`persona_prompt` asks the GPT for a speech of one speaker by writing the play's own
   format, ``"\\n\\nROMEO:\\n"``; :func:`generate_speeches` samples and cuts at the blank line;
3. :func:`train_speaker_classifier`: logistic regression on TF-IDF weighted character n-grams,
   trained on the real speeches of a few frequent speakers; the share of generated speeches it
   attributes to the requested speaker (:func:`persona_hits`) is compared with the same share on
   held-out real speeches and with chance.

For an instruction-tuned LLM (the chapter's guarded section) :func:`npc_messages` builds the chat
messages of a persona card and :func:`check_reply` filters the replies before a designer sees them.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

import numpy as np
import torch

SPEAKERS = ("ROMEO", "PETRUCHIO", "MENENIUS", "GLOUCESTER", "DUKE VINCENTIO")
NAME_RE = re.compile(r"^([A-Z][A-Za-z' ]*[A-Za-z]):$")


def speeches(text: str) -> list[tuple[str, str]]:
    """(speaker, speech) for every block of ``text`` that starts with a line ``NAME:``."""
    out = []
    for block in text.split("\n\n"):
        lines = block.strip("\n").split("\n")
        m = NAME_RE.match(lines[0])
        if m and len(lines) > 1:
            out.append((m.group(1), "\n".join(lines[1:])))
    return out


def speaker_split(pairs: list[tuple[str, str]], speakers=SPEAKERS, test_fraction: float = 0.2,
                  seed: int = 0) -> tuple[list[str], list[str], list[str], list[str]]:
    """(train texts, train labels, test texts, test labels) of ``speakers``; each speaker's
    speeches are shuffled (seeded) and the last ``test_fraction`` held out."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
    rng = random.Random(seed)
    x_tr, y_tr, x_te, y_te = [], [], [], []
    for s in speakers:
        texts = [t for who, t in pairs if who == s]
        if len(texts) < 5:
            raise ValueError(f"Speaker {s!r} has {len(texts)} speeches; pick speakers with at least 5.")
        rng.shuffle(texts)
        n_test = max(1, int(len(texts) * test_fraction))
        x_tr += texts[:-n_test]
        y_tr += [s] * (len(texts) - n_test)
        x_te += texts[-n_test:]
        y_te += [s] * n_test
    return x_tr, y_tr, x_te, y_te


@dataclass(frozen=True)
class ClassifierConfig:
    """Character n-grams inside word boundaries (``char_wb``), TF-IDF, L2 logistic regression."""

    ngram_range: tuple[int, int] = (2, 4)
    min_df: int = 2
    C: float = 10.0  # inverse regularisation strength
    max_iter: int = 2000


def train_speaker_classifier(texts: list[str], labels: list[str], cfg: ClassifierConfig = ClassifierConfig()):
    """A fitted scikit-learn pipeline ``text -> speaker``."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    if len(texts) != len(labels) or len(set(labels)) < 2:
        raise ValueError("Need as many labels as texts, and at least two different speakers.")
    clf = make_pipeline(
        TfidfVectorizer(analyzer="char_wb", ngram_range=cfg.ngram_range, min_df=cfg.min_df, sublinear_tf=True),
        LogisticRegression(C=cfg.C, max_iter=cfg.max_iter))
    return clf.fit(texts, labels)


def persona_prompt(speaker: str) -> str:
    """The play's own format: a blank line, the speaker's name and a colon, a new line."""
    if not speaker or "\n" in speaker:
        raise ValueError(f"A speaker is one line of text such as 'ROMEO', got {speaker!r}.")
    return f"\n\n{speaker}:\n"


def scene_prompts(text: str, speaker: str, n: int, context_chars: int = 96, seed: int = 0) -> list[str]:
    """``n`` prompts that end with :func:`persona_prompt` (``speaker``) and start with the
    ``context_chars`` characters that precede one of the speaker's real speeches in ``text`` (the
    end of the scene partner's speech): the conversation so far, as an NPC would have it."""
    head = persona_prompt(speaker)
    starts = [m.start() for m in re.finditer(re.escape(head), text) if m.start() >= context_chars]
    if not starts:
        raise ValueError(f"{speaker!r} never speaks in this text; pick a speaker from the text.")
    chosen = random.Random(seed).sample(starts, min(n, len(starts)))
    return [text[i - context_chars:i] + head for i in chosen]


@torch.no_grad()
def generate_speeches(model, tokenizer, speaker: str, n: int, max_chars: int = 200,
                      temperature: float = 0.8, seed: int = 0, prompts: list[str] | None = None) -> list[str]:
    """``n`` speeches sampled after :func:`persona_prompt` (``speaker``), each cut at its blank
    line; ``prompts`` (all of one length, e.g. from :func:`scene_prompts`) replace the bare prompt."""
    device = next(model.parameters()).device
    prompts = prompts or [persona_prompt(speaker)] * n
    if len({len(p) for p in prompts}) != 1 or not all(p.endswith(persona_prompt(speaker)) for p in prompts):
        raise ValueError("prompts must have one length and end with persona_prompt(speaker).")
    ids = torch.stack([tokenizer.encode_tensor(p) for p in prompts]).to(device)  # (n, prompt length)
    gen = torch.Generator(device=device).manual_seed(seed)
    out = model.generate(ids, max_chars, temperature=temperature, generator=gen)
    return [tokenizer.decode(row[ids.shape[1]:]).split("\n\n")[0].strip() for row in out.cpu()]


def persona_hits(clf, texts_by_speaker: dict[str, list[str]]) -> dict:
    """Share of each speaker's texts that ``clf`` attributes to that speaker, and the confusion
    matrix (rows: requested speaker, columns: predicted, in ``clf.classes_`` order)."""
    classes = list(clf.classes_)
    confusion = np.zeros((len(texts_by_speaker), len(classes)), dtype=int)
    hits = {}
    for i, (speaker, texts) in enumerate(texts_by_speaker.items()):
        if speaker not in classes:
            raise ValueError(f"The classifier does not know {speaker!r}; it knows {classes}.")
        pred = clf.predict(texts)
        hits[speaker] = float(np.mean(pred == speaker))
        for p in pred:
            confusion[i, classes.index(p)] += 1
    return {"per_speaker": hits, "mean": float(np.mean(list(hits.values()))), "confusion": confusion,
            "classes": classes}


# ---------------------------------------------------------------- an instruction-tuned LLM as NPC
@dataclass
class Persona:
    """A persona card: who the NPC is, what it knows, and the words it must never use."""

    name: str
    role: str
    voice: str
    knows: list[str] = field(default_factory=list)
    banned: list[str] = field(default_factory=lambda: ["as an ai", "language model", "assistant"])
    max_words: int = 40


def npc_messages(persona: Persona, player_line: str) -> list[dict]:
    """Chat messages: a system turn from the persona card, the player's line as the user turn."""
    if not player_line.strip():
        raise ValueError("The player's line is empty.")
    facts = "; ".join(persona.knows) or "nothing beyond your trade"
    system = (f"You are {persona.name}, {persona.role}, a character in a fantasy video game. "
              f"Speak {persona.voice}. You know: {facts}. Stay in character, never mention being an "
              f"AI, answer in at most {persona.max_words} words.")
    return [{"role": "system", "content": system}, {"role": "user", "content": player_line}]


def check_reply(reply: str, persona: Persona) -> list[str]:
    """Reasons to reject ``reply`` (an empty list: it passes): empty, too long, banned words."""
    problems = []
    words = reply.split()
    if not words:
        problems.append("empty")
    if len(words) > persona.max_words:
        problems.append(f"{len(words)} words > {persona.max_words}")
    low = reply.lower()
    problems += [f"says {b!r}" for b in persona.banned if b in low]
    return problems


def npc_candidates(model, tokenizer, persona: Persona, player_line: str, n: int = 4,
                   max_new_tokens: int = 64, temperature: float = 0.8, seed: int = 0) -> list[dict]:
    """``n`` sampled replies of an instruction-tuned LLM with their :func:`check_reply` verdicts."""
    from aigc_course.apps import hub

    replies = hub.chat(model, tokenizer, npc_messages(persona, player_line), max_new_tokens=max_new_tokens,
                       temperature=temperature, num_return_sequences=n, seed=seed)
    return [{"reply": r.strip(), "problems": check_reply(r, persona)} for r in replies]
