"""Instructions whose answers a program can check: the data of the tiny assistant (chapters 3.9, 5.14).

An assistant is trained on (instruction, response) pairs. Here every pair is made by code from the
course's own corpora, so that every reply of a model can be *scored by a program*. Five task
families (:data:`TASKS`):

* ``arith``: ``a + b`` or ``a - b`` for two-digit numbers (10..99; for ``-``, ``a >= b``, so the
  answer is never negative). Items: the 12,195 (a, op, b) triples. Exact match.
* ``string``: on a lower-case word of 3-8 letters from tinyshakespeare: reverse it, write it in
  capitals, count a letter in it (the letter is one of the word's own, or with probability 1/5 one
  that is absent: answer ``0``), or give the first letters of three words. Items: the words.
  Exact match.
* ``translate``: the Tatoeba English-Chinese pairs (``data.load_en_zh``) with at most 40 English and
  16 Chinese characters, simplified (or undetermined) script only, split by
  ``text.translation.split_pairs`` (1,000 test and 500 validation pairs; held-out pairs whose
  English sentence also occurs in training, and test pairs whose English occurs in validation,
  are dropped). Score: sentence BLEU
  (``metrics.text.sentence_bleu``, sacrebleu's ``zh`` tokenizer, i.e. one token per Chinese
  character, exp smoothing) / 100; success at a score of at least :data:`BLEU_SUCCESS` (0.3).
* ``poem``: the regular five-character poems of the Tang collection (``text.poems.regular_poems``,
  lines ``XXXXX，XXXXX。``); the response is the poem's first two lines (four verses, a quatrain).
  Two kinds: ``write`` (a quatrain beginning with the poem's first character; score = mean of
  *form* (two regular five-character lines of CJK ideographs) and *head* (the first character)) and ``continue``
  (given the first line, write the second; score = *form* of one regular five-character line
  that is not a copy of the first). Success = score 1. Rhyme and tones are not scored (see
  ``apps.tutor.VerseRules`` for those). Items: the poems, deduplicated on their first two lines;
  a validation or test poem whose first line also opens a training (or, for test, validation)
  poem is dropped, since the collection holds variants of some poems.
* ``persona``: speeches of the five speakers of ``apps.dialogue.SPEAKERS`` in tinyshakespeare; the
  response is the speech's first line (cut at a word to at most 80 characters; speeches whose
  first line has fewer than four words are left out). The check is a
  stated, cheap one: the speaker classifier of ``apps.dialogue`` (TF-IDF character n-grams and
  logistic regression, trained on the *training* speeches only, a few seconds) must attribute the
  reply to the requested speaker; the score is its probability for that speaker. Chance is 1/5,
  and a real held-out first line passes far from always (measure it with the gold responses).
  Items: the speeches.

Splits. Each family's items are shuffled once with ``random.Random(SPLIT_SEED)`` (independent of the
``seed`` of :func:`make_examples`) and cut into test (10%), validation (10%) and train (80%), so the
three splits never share a number triple, word, sentence pair, poem or speech (the translation
split is ``split_pairs``' own, with the same property). ``string`` questions that use three words
draw all three from the split's words.

Phrasings. Every kind has three or four *training* instruction templates and two *held-out* ones
(``phrasing="heldout"``) with other wording, never used in training: success on held-out
phrasings measures whether a model follows instructions or memorised their surface form. The two
phrasings are *paired*: for one ``(split, n, seed)`` they give the same items, kinds and answers
in the same order, and differ only in the wording (held-out template ``i mod 2`` where the
training phrasing draws template ``i``).

:func:`make_examples` draws ``n`` examples, as evenly as possible over ``tasks``, items without
replacement (cycling when ``n`` exceeds the pool), templates at random, with ``random.Random(seed)``.
:func:`pretraining_text` is the base model's corpus (no instructions in it); its mix is stated there.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cache, lru_cache

TASKS = ("arith", "string", "translate", "poem", "persona")
SPLITS = ("train", "val", "test")
PHRASINGS = ("train", "heldout")
SPLIT_SEED = 1234
BLEU_SUCCESS = 0.3  # a translation succeeds at sentence BLEU >= 30 (character level)
MAX_PERSONA_CHARS = 80
PERSONA_NAMES = {"ROMEO": "Romeo", "PETRUCHIO": "Petruchio", "MENENIUS": "Menenius",
                 "GLOUCESTER": "Gloucester", "DUKE VINCENTIO": "Duke Vincentio"}

# kind -> (training templates, held-out templates); fields in braces come from the item
TEMPLATES = {
    "add": (["What is {a} plus {b}?", "Compute {a} + {b}.", "{a} + {b} = ?"],
            ["Add {a} and {b}.", "Find the sum of {a} and {b}."]),
    "sub": (["What is {a} minus {b}?", "Compute {a} - {b}.", "{a} - {b} = ?"],
            ["Subtract {b} from {a}.", "Take {b} away from {a}. What is left?"]),
    "reverse": (["Reverse the word '{w}'.", "Write '{w}' backwards.", "reverse: {w}"],
                ["Spell {w} from the last letter to the first.", "Mirror the letters of '{w}'."]),
    "upper": (["Write '{w}' in capital letters.", "Uppercase: {w}", "Make '{w}' upper case."],
              ["Shout the word {w}.", "Turn every letter of '{w}' into a capital."]),
    "count": (["How many times does the letter '{c}' occur in '{w}'?", "Count the letter {c} in {w}.",
               "count '{c}' in '{w}'"],
              ["In the word {w}, how often do you see {c}?", "Number of {c}'s in '{w}'?"]),
    "first": (["Give the first letters of: {w1} {w2} {w3}", "Initials of '{w1} {w2} {w3}'?",
               "first letters: {w1} {w2} {w3}"],
              ["Take the opening letter of each word in '{w1} {w2} {w3}'.",
               "Which letters start the words {w1}, {w2} and {w3}?"]),
    "translate": (["Translate into Chinese: {en}", "How do you say '{en}' in Chinese?",
                   "Chinese for: {en}", "English to Chinese: {en}"],
                  ["Put this English sentence into Chinese: {en}",
                   "What is the Chinese translation of \"{en}\"?"]),
    "write": (["Write a five-character quatrain that begins with {c}.",
               "Poem starting with {c}, five characters a verse.", "Compose a Tang quatrain whose first character is {c}."],
              ["Give me four verses of five characters; the first one opens with {c}.",
               "A short classical poem, please, with {c} as its very first character."]),
    "continue": (["Continue this poem: {line}", "Write the next line: {line}", "Next line of the poem: {line}"],
                 ["Here is a line of a Tang poem, {line} What line comes after it?",
                  "Carry on the verse that begins {line}"]),
    "persona": (["Say a line as {name}.", "Speak like {name} from Shakespeare.", "{upper}, say something."],
                ["In the voice of {name}, give me one line.", "Pretend to be {name} and speak."]),
}


@dataclass
class Example:
    task: str
    instruction: str
    response: str
    meta: dict = field(default_factory=dict)


def _check_choice(value, allowed, what: str):
    if value not in allowed:
        raise ValueError(f"Unknown {what} {value!r}: use one of {list(allowed)}.")


def _three_way(items: list, seed: int = SPLIT_SEED) -> dict[str, list]:
    """A seeded shuffle cut into test (10%), val (10%) and train (the rest)."""
    items = list(items)
    random.Random(seed).shuffle(items)
    k = len(items) // 10
    return {"test": items[:k], "val": items[k:2 * k], "train": items[2 * k:]}


@lru_cache(maxsize=1)
def _shakespeare() -> str:
    from aigc_course.data import load_text

    return load_text("tinyshakespeare")


@lru_cache(maxsize=1)
def _tang_five() -> tuple:
    """The regular five-character poems (lines of 12 characters: 5 + 5 and two marks)."""
    from aigc_course.data import load_tang_poems
    from aigc_course.text.poems import regular_poems

    seen, out = set(), []
    for p in regular_poems(load_tang_poems()):
        if len(p.lines) >= 2 and len(p.lines[0]) == 12 and p.lines[:2] not in seen:  # no duplicates
            seen.add(p.lines[:2])
            out.append(p)
    return tuple(out)


@cache
def pools(task: str) -> dict[str, list]:
    """The underlying items of ``task``, split into ``{"train", "val", "test"}`` (disjoint)."""
    _check_choice(task, TASKS, "task")
    if task == "arith":
        triples = [(a, "+", b) for a in range(10, 100) for b in range(10, 100)]
        triples += [(a, "-", b) for a in range(10, 100) for b in range(10, a + 1)]
        return _three_way(triples)
    if task == "string":
        import re

        tokens = re.findall(r"[A-Za-z']+", _shakespeare())  # whole words: "o'er" is not "er"
        words = sorted({w for w in tokens if re.fullmatch("[a-z]{3,8}", w)})
        return _three_way(words)
    if task == "translate":
        from aigc_course.data import load_en_zh
        from aigc_course.text.translation import split_pairs

        short = [p for p in load_en_zh() if len(p.en) <= 40 and len(p.zh) <= 16]
        s = split_pairs(short, n_test=1000, n_val=500, seed=SPLIT_SEED, simplified_only=True)
        val_en = {p.en.lower() for p in s.val}  # split_pairs keeps val and test apart from train only
        return {"train": s.train, "val": s.val, "test": [p for p in s.test if p.en.lower() not in val_en]}
    if task == "poem":  # variants of one poem share a first line: keep each line in one split only
        out = _three_way(_tang_five())
        seen = {p.lines[0] for p in out["train"]}
        out["val"] = [p for p in out["val"] if p.lines[0] not in seen]
        seen |= {p.lines[0] for p in out["val"]}
        out["test"] = [p for p in out["test"] if p.lines[0] not in seen]
        return out
    from aigc_course.apps.dialogue import speeches

    out = {s: [] for s in SPLITS}
    for speaker in PERSONA_NAMES:  # split each speaker's speeches, so every split has all five
        own = [text for who, text in speeches(_shakespeare())
               if who == speaker and len(first_line(text).split()) >= 4]  # lines of 4 words or more
        for split, part in _three_way(own).items():
            out[split] += [(speaker, text) for text in part]
    return out


def first_line(speech: str, max_chars: int = MAX_PERSONA_CHARS) -> str:
    """The first line of a speech, cut at a word boundary to at most ``max_chars`` characters."""
    line = speech.strip().split("\n")[0].strip()
    return line if len(line) <= max_chars else line[:max_chars].rsplit(" ", 1)[0]


def _build(task: str, item, rng: random.Random, phrasing: str, split: str) -> Example:
    """One example of ``task`` from ``item``: the kind, the template, the response."""
    def pick(kind: str, **fields) -> tuple[str, int]:
        train, held = TEMPLATES[kind]
        i = rng.randrange(len(train))  # the same draw for both phrasings: paired examples
        j = i if phrasing == "train" else i % len(held)
        return (train if phrasing == "train" else held)[j].format(**fields), j

    if task == "arith":
        a, op, b = item
        kind, answer = ("add", a + b) if op == "+" else ("sub", a - b)
        text, t = pick(kind, a=a, b=b)
        return Example(task, text, str(answer), {"kind": kind, "template": t, "answer": str(answer), "item": item})
    if task == "string":
        w = item
        kind = ("reverse", "upper", "count", "first")[rng.randrange(4)]
        answer, fields = {"reverse": w[::-1], "upper": w.upper()}.get(kind), {"w": w}
        if kind == "count":
            absent = [c for c in "abcdefghijklmnopqrstuvwxyz" if c not in w]
            c = rng.choice(absent) if rng.random() < 0.2 and absent else rng.choice(w)
            answer, fields = str(w.count(c)), {"w": w, "c": c}
        elif kind == "first":
            words = [w] + rng.sample(pools("string")[split], 2)
            answer, fields = "".join(x[0] for x in words), {"w1": words[0], "w2": words[1], "w3": words[2]}
        text, t = pick(kind, **fields)
        meta = {"kind": kind, "template": t, "answer": answer, "item": w}
        if kind == "count":
            meta["letter"] = fields["c"]
        return Example(task, text, answer, meta)
    if task == "translate":
        text, t = pick("translate", en=item.en)
        return Example(task, text, item.zh, {"kind": "translate", "template": t, "reference": item.zh,
                                            "item": item.en})
    if task == "poem":
        l1, l2 = item.lines[:2]
        if rng.random() < 0.5:
            text, t = pick("write", c=l1[0])
            return Example(task, text, f"{l1}\n{l2}", {"kind": "write", "template": t, "head": l1[0], "item": l1})
        text, t = pick("continue", line=l1)
        return Example(task, text, l2, {"kind": "continue", "template": t, "first_line": l1, "item": l1})
    speaker, speech = item
    text, t = pick("persona", name=PERSONA_NAMES[speaker], upper=speaker)
    meta = {"kind": "persona", "template": t, "speaker": speaker, "item": speech[:40]}
    return Example(task, text, first_line(speech), meta)


def make_examples(split: str, n: int, seed: int = 0, tasks=TASKS, phrasing: str = "train") -> list[Example]:
    """``n`` examples of ``tasks`` (as evenly as possible) from ``split``, phrased with the
    training or the held-out templates; deterministic given ``seed``."""
    _check_choice(split, SPLITS, "split")
    _check_choice(phrasing, PHRASINGS, "phrasing")
    tasks = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    for task in tasks or (None,):  # an empty tuple is an error too
        _check_choice(task, TASKS, "task")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}.")
    rng = random.Random(f"{seed}-{split}-train")  # one stream for both phrasings
    out = []
    for i, task in enumerate(tasks):
        k = n // len(tasks) + (i < n % len(tasks))
        pool = pools(task)[split]
        order = []
        while len(order) < k:  # without replacement, cycling through the pool
            perm = list(range(len(pool)))
            rng.shuffle(perm)
            order += perm
        out += [_build(task, pool[j], rng, phrasing, split) for j in order[:k]]
    rng.shuffle(out)
    return out


# ------------------------------------------------------------------ checking replies
def _poem_line_ok(line: str) -> bool:
    """``XXXXX，XXXXX。`` with ten CJK ideographs (an unknown-character box is no character)."""
    from aigc_course.text.poems import is_regular_line

    return len(line) == 12 and is_regular_line(line) and all("\u4e00" <= c <= "\u9fff" for c in line[:5] + line[6:11])


@lru_cache(maxsize=1)
def persona_classifier():
    """The speaker classifier of ``apps.dialogue`` trained on the training split's speeches."""
    from aigc_course.apps.dialogue import train_speaker_classifier

    train = pools("persona")["train"]
    return train_speaker_classifier([t for _, t in train], [s for s, _ in train])


def check(example: Example, reply: str) -> float:
    """Score of ``reply`` to ``example`` in [0, 1] (1.0 = right for the exact-match tasks)."""
    if not isinstance(example, Example) or not isinstance(reply, str):
        raise TypeError(f"check needs an Example and a string, got {type(example).__name__}, {type(reply).__name__}.")
    _check_choice(example.task, TASKS, "task")
    reply = reply.strip()
    m = example.meta
    if example.task in ("arith", "string"):
        return float(reply == m["answer"])
    if example.task == "translate":
        from aigc_course.metrics.text import sentence_bleu

        return sentence_bleu(reply, [m["reference"]], tokenize="zh").score / 100.0 if reply else 0.0
    if example.task == "poem":
        lines = [x.strip() for x in reply.split("\n") if x.strip()]
        if m["kind"] == "write":
            form = len(lines) == 2 and all(_poem_line_ok(x) for x in lines)
            head = bool(lines) and lines[0][:1] == m["head"]
            return (form + head) / 2
        return float(len(lines) == 1 and _poem_line_ok(lines[0]) and lines[0] != m["first_line"])
    if not reply or len(reply) > 2 * MAX_PERSONA_CHARS:
        return 0.0
    clf = persona_classifier()
    probs = clf.predict_proba([reply])[0]
    return float(probs[list(clf.classes_).index(m["speaker"])])


def success(example: Example, reply: str) -> bool:
    """Whether ``reply`` solves ``example``: score 1 (exact tasks, poems), BLEU >= 30
    (translation), the classifier's most likely speaker is the requested one (persona)."""
    score = check(example, reply)
    if example.task == "translate":
        return score >= BLEU_SUCCESS
    if example.task == "persona":
        if score == 0.0:
            return False
        clf = persona_classifier()
        return clf.predict([reply.strip()])[0] == example.meta["speaker"]
    return score == 1.0


# ------------------------------------------------------------------ the base model's corpus
def pretraining_text(seed: int = 0, max_chars: int | None = None) -> str:
    """The base model's corpus: documents of four sources, shuffled with ``seed``, joined by blank lines.

    * all of tinyshakespeare, cut into its speeches (about 1.1 M characters);
    * the *training* split of the five-character Tang poems, and the regular seven-character poems
      (whole poems, one line per couplet);
    * the *training* split of the translation pairs, as lines ``English = Chinese``, 8 per document;
    * the *training* split of the arithmetic triples, as lines ``a + b = c``, 8 per document.

    No validation or test poem, sentence pair or number triple is in it, and no instruction.
    ``max_chars`` cuts the result.
    """
    rng = random.Random(seed)
    docs = [d.strip("\n") for d in _shakespeare().split("\n\n") if d.strip()]
    from aigc_course.data import load_tang_poems
    from aigc_course.text.poems import regular_poems

    held = {x for s in ("val", "test") for p in pools("poem")[s] for x in (p.lines[:2], p.lines[0])}
    docs += [p.text for p in regular_poems(load_tang_poems()) if p.lines[:2] not in held and p.lines[0] not in held]

    def grouped(lines: list[str], k: int = 8) -> list[str]:
        rng.shuffle(lines)
        return ["\n".join(lines[i:i + k]) for i in range(0, len(lines), k)]

    docs += grouped([f"{p.en} = {p.zh}" for p in pools("translate")["train"]])
    docs += grouped([f"{a} {op} {b} = {a + b if op == '+' else a - b}" for a, op, b in pools("arith")["train"]])
    rng.shuffle(docs)
    text = "\n\n".join(docs) + "\n"
    return text if max_chars is None else text[:max_chars]
