"""A tutor for Tang regulated verse: check a learner's lines against the form rules (chapter 6.3).

Chapter 5.3 checks the *length* of a generated line (:func:`aigc_course.text.poems.is_regular_line`).
Regulated verse (近體詩: the quatrain 絕句 of two couplets and the octave 律詩 of four) has two
more rules, and both need to know a character's tone class in Middle Chinese, level (平) or
oblique (仄), which modern Mandarin no longer shows (白, 國, 十 were checked-tone syllables, 仄).
The course ships no rhyme dictionary, so :class:`VerseRules` *infers* both from the training poems:

1. **Tone classes.** The even verses of a regulated poem end on its rhyme, in a level tone, and the
   odd verses (after the first) end in an oblique tone: each line end is a vote. The tone pattern
   then spreads the votes to every character: in a verse the 2nd and 4th characters differ (and
   the 4th and 6th in seven-character verse); in a couplet the two 2nd characters differ; across
   couplets they agree (粘). With ``s`` the tone scores (+1 level, -1 oblique), ``e`` the line-end
   votes, ``n`` their count and ``W`` the signed counts of the pattern constraints,
   ``s <- (e + W s) / (n + deg + prior)``, a few times (label propagation on a signed graph).
2. **Rhyme.** Two characters may rhyme if they rhyme in some training poem (they end even verses
   of the same poem) or share at least ``min_shared`` such partners.

:meth:`VerseRules.check` returns one :class:`RuleResult` per rule, with messages a learner can
read; :func:`continue_poem` asks a character GPT for many next lines and keeps those that pass.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch

from aigc_course.text.decoding import gpt_next_logits, sample
from aigc_course.text.poems import POEM_END, is_regular_line

RULES = ("form", "rhyme", "tones")
FORMS = {2: "quatrain (絕句)", 4: "regulated octave (律詩)"}


def verses(lines: list[str]) -> list[str]:
    """The verses of regular couplet lines, without punctuation: ``XXXXX，XXXXX。`` -> 2 verses."""
    out = []
    for line in lines:
        half = len(line) // 2
        out += [line[: half - 1], line[half:-1]]
    return out


def _pattern_pairs(vs: list[str]) -> list[tuple[str, str, int]]:
    """(char, char, sign) of the tone pattern: -1 the two must differ, +1 they must agree."""
    out = []
    for v in vs:
        out.append((v[1], v[3], -1))  # 二四異
        if len(v) == 7:
            out.append((v[3], v[5], -1))  # 四六異 (so 二六同)
    for i in range(0, len(vs) - 1, 2):
        out.append((vs[i][1], vs[i + 1][1], -1))  # 對: a couplet's 2nd characters differ
        if i + 2 < len(vs):
            out.append((vs[i + 1][1], vs[i + 2][1], +1))  # 粘: the next couplet sticks to this one
    return out


@dataclass
class RuleResult:
    passed: bool
    problems: list[str] = field(default_factory=list)


@dataclass
class VerseRules:
    """Tone classes and rhyme partners inferred from a list of regular poems (see the module doc)."""

    tone_score: dict[str, float]
    rhyme_partners: dict[str, set[str]]
    threshold: float = 0.05  # |score| below this: tone unknown, the character is not judged
    min_shared: int = 2

    @classmethod
    def fit(cls, poems, iters: int = 5, prior: float = 5.0, **kw) -> VerseRules:
        """Learn from ``poems`` (objects with ``.lines``, or lists of lines) of regular couplets."""
        all_lines = [list(getattr(p, "lines", p)) for p in poems]
        all_lines = [ls for ls in all_lines if ls and all(is_regular_line(x) for x in ls)]
        if not all_lines:
            raise ValueError("VerseRules.fit needs regular poems (lines like 'XXXXX，XXXXX。'); "
                             "filter them with aigc_course.text.poems.regular_poems.")
        votes, pairs, partners = Counter(), Counter(), {}
        for ls in all_lines:
            vs = verses(ls)
            for i, v in enumerate(vs[1:], start=1):
                votes[(v[-1], 1 if i % 2 == 1 else -1)] += 1  # even verse: level; odd verse: oblique
            pairs.update(_pattern_pairs(vs))
            rhymes = {v[-1] for v in vs[1::2]}
            for c in rhymes:
                partners.setdefault(c, set()).update(rhymes - {c})
        chars = sorted({c for c, _ in votes} | {c for a, b, _ in pairs for c in (a, b)})
        index = {c: i for i, c in enumerate(chars)}
        C = len(chars)
        e, n = torch.zeros(C), torch.zeros(C)
        for (c, sign), k in votes.items():
            e[index[c]] += sign * k
            n[index[c]] += k
        rows = torch.tensor([index[a] for a, b, _ in pairs] + [index[b] for a, b, _ in pairs])
        cols = torch.tensor([index[b] for a, b, _ in pairs] + [index[a] for a, b, _ in pairs])
        w = torch.tensor([s * k for (_, _, s), k in pairs.items()] * 2, dtype=torch.float)  # W[rows, cols]
        deg = torch.zeros(C).index_add_(0, rows, w.abs())  # (C,) constraints each character takes part in
        s = e / (n + prior)  # step 1: the line-end votes alone
        for _ in range(iters):  # step 2: spread them along the tone pattern, s <- (e + W s) / (n + deg + prior)
            Ws = torch.zeros(C).index_add_(0, rows, w * s[cols])
            s = (e + Ws) / (n + deg + prior)
        return cls(dict(zip(chars, s.tolist())), partners, **kw)

    def tone(self, ch: str) -> str:
        """'平' (level), '仄' (oblique) or '?' (unknown: too little evidence)."""
        s = self.tone_score.get(ch, 0.0)
        return "?" if abs(s) < self.threshold else ("平" if s > 0 else "仄")

    def may_rhyme(self, a: str, b: str) -> bool:
        if a == b:
            return True
        pa, pb = self.rhyme_partners.get(a, set()), self.rhyme_partners.get(b, set())
        return b in pa or len(pa & pb) >= self.min_shared

    def check(self, lines: list[str], complete: bool = True) -> dict[str, RuleResult]:
        """One :class:`RuleResult` per rule of :data:`RULES` for the poem ``lines``.

        ``complete=False`` checks a poem in progress (any number of lines, at least one).
        """
        if isinstance(lines, str):
            lines = [x for x in lines.split("\n") if x]
        if not lines:
            raise ValueError("check() needs at least one line, e.g. ['白日依山盡，黃河入海流。'].")
        form = []
        for i, line in enumerate(lines, 1):
            if not is_regular_line(line):
                form.append(f"line {i} '{line}' is not 5+5 or 7+7 characters with '，' and '。' in place")
            elif len(line) != len(lines[0]):
                form.append(f"line {i} has {len(line) // 2 - 1}-character verses, line 1 has {len(lines[0]) // 2 - 1}")
        if complete and len(lines) not in FORMS:
            form.append(f"{len(lines)} couplet lines: a quatrain has 2, a regulated octave 4")
        out = {"form": RuleResult(not form, form)}
        if any(not is_regular_line(x) or len(x) != len(lines[0]) for x in lines):
            skip = ["not checked: fix the form first"]
            return {**out, "rhyme": RuleResult(False, skip), "tones": RuleResult(False, skip)}
        vs = verses(lines)
        ends = [v[-1] for v in vs[1::2]]
        rhyme = [f"rhyme '{c}' (verse {2 * i + 2}) is oblique (仄); rhymes must be level (平)"
                 for i, c in enumerate(ends) if self.tone(c) == "仄"]
        rhyme += [f"'{a}' and '{b}' never rhyme together in the corpus"
                  for i, a in enumerate(ends) for b in ends[i + 1:] if not self.may_rhyme(a, b)]
        tones = []
        for a, b, sign in _pattern_pairs(vs):
            ta, tb = self.tone(a), self.tone(b)
            if "?" in (ta, tb) or (ta == tb) == (sign > 0):
                continue
            want = "the same tone" if sign > 0 else "opposite tones"
            tones.append(f"'{a}' ({ta}) and '{b}' ({tb}) should have {want}")
        return {**out, "rhyme": RuleResult(not rhyme, rhyme), "tones": RuleResult(not tones, tones)}

    def feedback(self, lines: list[str], complete: bool = True) -> str:
        """The report of :meth:`check` as text, one block per rule, and the tones of each verse."""
        report = self.check(lines, complete)
        text = []
        for rule in RULES:
            r = report[rule]
            text.append(f"[{'pass' if r.passed else 'FAIL'}] {rule}" + "".join(f"\n    - {p}" for p in r.problems))
        if report["form"].passed or not complete:
            regular = [x for x in lines if is_regular_line(x)]
            text.append("tones: " + " / ".join("".join(self.tone(c) for c in v) for v in verses(regular)))
        return "\n".join(text)


@torch.no_grad()
def continue_poem(model, tok, lines: list[str], rules: VerseRules, n: int = 64, temperature: float = 0.8,
                  top_k: int | None = 20, seed: int = 0) -> tuple[list[str], list[str]]:
    """Sample ``n`` next lines after ``lines`` from a character GPT; return (all, passing).

    A candidate passes when the poem with it added passes every rule of ``rules.check`` (with
    ``complete=False`` until the poem has 2 or 4 lines).
    """
    if not lines or not all(is_regular_line(x) for x in lines):
        raise ValueError("continue_poem needs the learner's regular lines first; check them with rules.check.")
    prompt = torch.tensor([tok.encode(POEM_END + "\n".join(lines) + "\n")] * n)  # (n, T)
    device = next(model.parameters()).device
    out = sample(gpt_next_logits(model), prompt.to(device), len(lines[0]) + 1, temperature, top_k,
                 generator=torch.Generator(device=device).manual_seed(seed))
    cands = [tok.decode(row[prompt.shape[1]:].tolist()).split("\n")[0] for row in out]
    done = len(lines) + 1 in FORMS
    passing = [c for c in cands if all(r.passed for r in rules.check(lines + [c], complete=done).values())]
    return cands, passing


def pass_rates(rules: VerseRules, poems: list[list[str]]) -> dict[str, float]:
    """Share of ``poems`` (lists of lines) that pass each rule, and all rules together."""
    if not poems:
        raise ValueError("pass_rates needs at least one poem.")
    reports = [rules.check(p) if p else {r: RuleResult(False) for r in RULES} for p in poems]
    rates = {r: sum(rep[r].passed for rep in reports) / len(poems) for r in RULES}
    rates["all"] = sum(all(rep[r].passed for r in RULES) for rep in reports) / len(poems)
    return rates


@torch.no_grad()
def sample_quatrains(model, tok, n: int, temperature: float = 0.8, top_k: int | None = 20,
                     seed: int = 0) -> list[list[str]]:
    """``n`` poems of two lines sampled in one batch after the end-of-poem marker (the first two
    lines of each sample; fewer if the model ends the poem or the line runs on)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}.")
    prompt = torch.tensor([tok.encode(POEM_END)] * n)  # (n, 2)
    device = next(model.parameters()).device
    out = sample(gpt_next_logits(model), prompt.to(device), 2 * 17, temperature, top_k,
                 generator=torch.Generator(device=device).manual_seed(seed))
    texts = [tok.decode(row[prompt.shape[1]:].tolist()).split(POEM_END)[0] for row in out]
    return [[x for x in t.split("\n")[:2] if x] for t in texts]
