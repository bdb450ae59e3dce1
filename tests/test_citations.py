"""Citations and cross-references in the chapters' prose stay true.

* Every ``{cite...}`` role in a notebook's markdown names a key of ``book/references.bib`` (an
  unknown key fails the ``-W`` book build), and the keys of the bibliography are unique.
* Every author-year mention of a paper in a chapter's prose ("Ho et al. (2020)", "(Vaswani et
  al., 2017)", "Bradley & Terry, 1952", "Shannon (1951)") comes with a citation of that work in
  the same cell, so that a reader of the book can click through to the bibliography. The
  References list at the end of a chapter is exempt: it is the plain-text copy of the citations
  for readers of the notebook in Jupyter or Colab, where a role shows as raw text.
* Every work a chapter cites is also in that chapter's References list (first author and year).
* No markdown cell sends the reader to a chapter or a part that does not exist in ``_toc.yml``
  ("chapter 6.2", "Chapter 6", "part 7"), or to a part that has no chapters yet unless the same
  sentence says so, and no cell promises "a later chapter" without naming it.

These tests read the notebooks as JSON; they need no kernel, no network and no book build.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIB = REPO / "book" / "references.bib"
TOC = REPO / "_toc.yml"
NOTEBOOKS = sorted((REPO / "notebooks").glob("*/*.ipynb"))

# Chapters whose markdown is being cited by another change: their author-year mentions are not
# all cited yet. The xfail is strict, so the entry must go once the citations are in.
CITATIONS_PENDING: set[str] = set()

# {cite}`key`, {cite:p}`a,b`, {cite:t}`{see}key{p. 3}`; footcite roles would need a
# footbibliography on the page, so they are counted too (and must name known keys).
CITE_ROLE = re.compile(r"\{(?:foot)?cite(?::[a-z]+)?\}`([^`]*)`")
CITE_TARGET = re.compile(r"\s*(?:\{[^{}]*\})?\s*([^{}\s,]+)\s*(?:\{[^{}]*\})?\s*")
REFERENCES_HEADING = re.compile(r"^#{1,6}\s+References\s*$", re.MULTILINE)

# An author's surname: a capitalised word, possibly hyphenated ("Sohl-Dickstein"), with any
# letters ("Bińkowski", "Kynkäänniemi").
NAME = r"[^\W\d_a-z][^\W\d_]*(?:[-'’][^\W\d_]+)*"
YEAR = r"(1[89]\d\d|20\d\d)[a-z]?\b"
# "Ho et al. (2020)", "(Ho et al., 2020", "Hogan et al. 2021", "Radford et\nal., 2019"
ET_AL = re.compile(rf"({NAME})\s+et\s+al\.?,?\s*\(?\s*{YEAR}")
# "Hochreiter and Schmidhuber, 1997", "Ho & Salimans (2022)", "Brynjolfsson, Li & Raymond, 2023"
SEVERAL = re.compile(rf"({NAME})(?:,\s+{NAME})*,?\s+(?:and|&)\s+{NAME},?\s*\(?\s*{YEAR}")
# "Shannon (1951)", "(Williams, 1992)": only for surnames that head an entry of the bibliography,
# since "Transformer (2017)" or "BERT (2018)" name a model, not an author.
SINGLE = re.compile(rf"({NAME}),?\s*\(\s*{YEAR}|({NAME}),\s*{YEAR}")
# "Kaplan et al. did", "Burda et al.'s threshold": a work named without its year
BARE_ET_AL = re.compile(rf"({NAME})\s+et\s+al\b")

CHAPTER_REF = re.compile(
    r"\b(?:[Cc]hapters?|[Nn]otebooks?)\s+(\d+\.\d+(?:\s*(?:,|and|or|to|-|–)\s*\d+\.\d+)*)"
)
BARE_CHAPTER = re.compile(r"\b[Cc]hapters?\s+(\d+)\b(?!\.\d)")
PART_REF = re.compile(r"\bparts?\s+(\d+(?:\s*(?:,|and|or|to|-|–)\s*\d+)*)", re.IGNORECASE)
NOT_WRITTEN = re.compile(
    r"not\s+(?:yet\s+)?(?:been\s+)?written|being\s+written|to\s+be\s+written|forthcoming"
    r"|in\s+preparation|not\s+yet\s+(?:exist|available)",
    re.IGNORECASE,
)
VAGUE_PROMISE = re.compile(
    r"\b(?:a|an|the|some)\s+(?:later|future|forthcoming|coming|upcoming)\s+"
    r"(?:chapters?|parts?|notebooks?)\b"
    r"|\b(?:later|future|upcoming)\s+(?:chapters|parts|notebooks)\b"
    r"|\bwill\s+be\s+(?:covered|discussed|treated|explained|shown)"
    r"\s+(?:later|in\s+(?:a|part|chapter))",
    re.IGNORECASE,
)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def _fold(text: str) -> str:
    """Lower-case ASCII letters only: 'Bi{\\'n}kowski' and 'Bińkowski' both give 'binkowski'."""
    text = re.sub(r"\\[\"'`^~=.uvHcdbtkr]\s*\{?\s*([A-Za-z])\s*\}?", r"\1", text)  # \"a, \'{e}
    text = re.sub(r"\\([lLoO])(?![A-Za-z])", r"\1", text)  # \L, \o
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z]", "", text.lower())


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside braces."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i])
            start = i + len(sep)
            i += len(sep)
            continue
        i += 1
    parts.append(text[start:])
    return parts


def _fields(body: str) -> dict[str, str]:
    """The fields of one BibTeX entry body (the text after 'key,'), without outer delimiters."""
    fields, i = {}, 0
    name_re = re.compile(r"[\s,]*([A-Za-z][\w-]*)\s*=\s*")
    while m := name_re.match(body, i):
        name, i = m.group(1).lower(), m.end()
        if body[i : i + 1] == "{":
            depth, j = 0, i
            while j < len(body):
                depth += {"{": 1, "}": -1}.get(body[j], 0)
                if depth == 0:
                    break
                j += 1
            fields[name], i = body[i + 1 : j], j + 1
        elif body[i : i + 1] == '"':
            j = body.index('"', i + 1)
            fields[name], i = body[i + 1 : j], j + 1
        else:
            value = re.compile(r"[^,\s}]*").match(body, i).group(0)
            fields[name], i = value, i + len(value)
    return fields


@cache
def _bib() -> tuple[list[str], dict[str, dict]]:
    """([every key, in file order], {key: {"first": surname of the first author, "year": str}}).

    The surname is folded (``_fold``); a corporate author ({OpenAI}, {Tatoeba contributors})
    gives its first word. The year is None when the entry has none.
    """
    text = BIB.read_text(encoding="utf-8")
    entries: dict[str, dict] = {}
    keys: list[str] = []
    for m in re.finditer(r"^@(\w+)\s*\{\s*([^,\s]+)\s*,", text, re.MULTILINE):
        kind, key = m.group(1).lower(), m.group(2)
        if kind in ("comment", "preamble", "string"):
            continue
        keys.append(key)
        depth, j = 1, m.end()
        while depth and j < len(text):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        fields = _fields(text[m.end() : j - 1])
        first = _split_top(fields.get("author", fields.get("editor", "")), " and ")[0].strip()
        if first.startswith("{") and first.endswith("}"):  # a corporate author
            surname = _fold(first[1:-1].split()[0])
        elif "," in first:
            surname = _fold(first.split(",")[0])
        else:
            surname = _fold(first.split()[-1]) if first.split() else ""
        year = re.search(r"\d{4}", fields.get("year", ""))
        entries[key] = {"first": surname, "year": year.group(0) if year else None}
    return keys, entries


def _bib_entries() -> dict[str, dict]:
    return _bib()[1]


@cache
def _cells(path: Path) -> list[tuple[str, str]]:
    """[(cell id, markdown source)] of a notebook."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [
        (c.get("id", "?"), "".join(c["source"]))
        for c in nb["cells"]
        if c["cell_type"] == "markdown"
    ]


def _prose(path: Path) -> list[tuple[str, str]]:
    """The markdown cells with the References section cut off (it is the plain-text list)."""
    out = []
    for cid, src in _cells(path):
        m = REFERENCES_HEADING.search(src)
        out.append((cid, src[: m.start()] if m else src))
    return out


def _references(path: Path) -> list[str]:
    """The items of a chapter's References list, each as one line."""
    items: list[str] = []
    for _, src in _cells(path):
        m = REFERENCES_HEADING.search(src)
        if not m:
            continue
        for line in src[m.end() :].splitlines():
            if re.match(r"^#{1,6}\s", line):
                break
            if line.startswith("- "):
                items.append(line[2:].strip())
            elif line.strip() and items:
                items[-1] += " " + line.strip()
    return items


def _cited_keys(text: str) -> list[str]:
    keys = []
    for role in CITE_ROLE.finditer(text):
        for target in _split_top(role.group(1), ","):
            m = CITE_TARGET.fullmatch(target)
            assert m, f"malformed citation target {target!r} in {role.group(0)!r}"
            keys.append(m.group(1))
    return keys


def _strip_code(text: str) -> str:
    """Remove fenced code, inline code (cite roles included) and dollar math."""
    text = re.sub(r"^[ \t]*(```|~~~).*?^[ \t]*\1", " ", text, flags=re.DOTALL | re.MULTILINE)
    text = re.sub(r"\{[\w:-]+\}`[^`]*`", " ", text)
    text = re.sub(r"`[^`\n]*`", " ", text)
    text = re.sub(r"\$\$.*?\$\$|\$[^$\n]*\$", " ", text, flags=re.DOTALL)
    return text


def _mentions(text: str) -> list[tuple[str, str, str]]:
    """Author-year mentions in prose: [(matched text, folded surname, year)]."""
    text = _strip_code(text)
    found: dict[int, tuple[str, str, str]] = {}
    for pattern in (ET_AL, SEVERAL):
        for m in pattern.finditer(text):
            mention = (" ".join(m.group(0).split()), _fold(m.group(1)), m.group(2))
            found.setdefault(m.start(), mention)
    surnames = {e["first"] for e in _bib_entries().values() if e["first"]}
    for m in SINGLE.finditer(text):
        name, year = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        inside = any(s <= m.start() < s + len(t) for s, (t, _, _) in found.items())
        if _fold(name) in surnames and not inside:
            found.setdefault(m.start(), (" ".join(m.group(0).split()), _fold(name), year))
    return [found[k] for k in sorted(found)]


def _bare_mentions(text: str) -> list[tuple[str, str]]:
    """'Name et al.' without a year, outside quotations: [(matched text, folded surname)]."""
    text = _strip_code(text)
    text = re.sub(r'"[^"]{0,300}"|“[^”]{0,300}”', " ", text)  # quoted sentences are data
    dated = {m.start() for m in ET_AL.finditer(text)}
    return [(" ".join(m.group(0).split()), _fold(m.group(1)))
            for m in BARE_ET_AL.finditer(text) if m.start() not in dated]


def _same_author(a: str, b: str) -> bool:
    """'oord' names 'vandenoord'; a folded particle or first name may be missing on one side."""
    return bool(a and b) and (a == b or a.endswith(b) or b.endswith(a))


@cache
def _toc_numbers() -> tuple[dict[int, int], set[str]]:
    """({part: number of chapters}, {"p.c" chapter numbers}) from _toc.yml."""
    toc = yaml.safe_load(TOC.read_text(encoding="utf-8"))
    counts: dict[int, int] = {}
    numbers: set[str] = set()
    for part in toc["parts"]:
        m = re.match(r"\s*Part\s+(\d+)\b", part.get("caption", ""))
        if not m:
            continue
        p = int(m.group(1))
        chapters = [
            c["file"] for c in part.get("chapters", []) if c["file"].startswith("notebooks/")
        ]
        counts[p] = len(chapters)
        numbers.update(f"{p}.{i}" for i in range(1, len(chapters) + 1))
    return counts, numbers


def _chapter_number(path: Path) -> str:
    """The number in a notebook's title, '# 3.3 Transformer ...' -> '3.3'."""
    m = re.match(r"#\s+(\d+\.\d+)\s", _cells(path)[0][1])
    return m.group(1) if m else ""


def _expand(spec: str, pattern: str) -> list[str]:
    """'3.1 and 5.1' -> ['3.1', '5.1']; '5.7 to 5.9' -> ['5.7', '5.8', '5.9'] (same part)."""
    tokens = re.findall(rf"{pattern}|to|-|–", spec)
    out, i = [], 0
    while i < len(tokens):
        if i + 2 < len(tokens) and tokens[i + 1] in ("to", "-", "–"):
            a, b = tokens[i], tokens[i + 2]
            if "." in a:
                (pa, ca), (pb, cb) = a.split("."), b.split(".")
                out += [f"{pa}.{c}" for c in range(int(ca), int(cb) + 1)] if pa == pb else [a, b]
            else:
                out += [str(n) for n in range(int(a), int(b) + 1)]
            i += 3
        else:
            out.append(tokens[i])
            i += 1
    return [t for t in out if t not in ("to", "-", "–")]


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.;!?])\s+|\n\s*\n", text) if s.strip()]


NB_IDS = [_rel(p) for p in NOTEBOOKS]


# --------------------------------------------------------------------------------------------
# The bibliography and the citation keys
# --------------------------------------------------------------------------------------------


def test_bibliography_is_parsed_and_its_keys_are_unique():
    keys = _bib()[0]
    assert len(keys) >= 150, len(keys)
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    assert not duplicates, f"duplicate keys in {BIB.name}: {duplicates}"
    entries = _bib_entries()
    # the parser reads authors and years, or the checks below would pass for the wrong reason
    assert entries["ho2020ddpm"] == {"first": "ho", "year": "2020"}
    assert entries["binkowski2018demystifying"]["first"] == "binkowski"
    assert entries["kynkaanniemi2019improved"]["first"] == "kynkaanniemi"
    assert entries["oord2016pixel"]["first"] == "vandenoord"
    assert entries["openai2023gpt4"]["first"] == "openai"
    missing = sorted(k for k, e in entries.items() if not e["first"])
    assert not missing, f"entries without an author: {missing}"


def test_every_cited_key_is_in_the_bibliography():
    known = set(_bib_entries())
    unknown, n_cites, citing = [], 0, set()
    for path in NOTEBOOKS:
        for cid, src in _cells(path):
            for key in _cited_keys(src):
                n_cites += 1
                citing.add(_rel(path))
                if key not in known:
                    unknown.append(f"{_rel(path)} cell {cid}: {key}")
    assert not unknown, "citation keys missing from book/references.bib:\n" + "\n".join(unknown)
    # Not vacuous: the chapters do cite, and most of them.
    assert n_cites >= 250, f"only {n_cites} citations in the notebooks"
    assert len(citing) >= len(NOTEBOOKS) - len(CITATIONS_PENDING), sorted(set(NB_IDS) - citing)


def test_mention_patterns():
    text = (
        "as in Ho et al. (2020), the weights; GANs (Goodfellow et al., 2014) and (Hogan et al. "
        "2021 survey it); the LSTM (Hochreiter and\nSchmidhuber, 1997); (Brynjolfsson,\nLi & "
        "Raymond, 2023); Shannon\n(1951) estimated; (Williams, 1992); Radford et\nal., 2019; "
        "(van den Oord et al., 2016); Bińkowski et al., 2018. Not: the Transformer (2017), "
        "BERT (2018), in 2022, March 2023, {cite:t}`ho2020ddpm`, `Kaplan et al. (2020)`."
    )
    got = [(s, y) for _, s, y in _mentions(text)]
    assert got == [
        ("ho", "2020"), ("goodfellow", "2014"), ("hogan", "2021"), ("hochreiter", "1997"),
        ("brynjolfsson", "2023"), ("shannon", "1951"), ("williams", "1992"), ("radford", "2019"),
        ("oord", "2016"), ("binkowski", "2018"),
    ], got
    bare = (
        'as Kaplan et al. and Ho et al. (2020) did; Burda et al.\'s threshold; '
        '"written by Ho et al."'
    )
    assert [s for _, s in _bare_mentions(bare)] == ["kaplan", "burda"]


@pytest.mark.parametrize(
    "nb",
    [
        pytest.param(
            n,
            marks=pytest.mark.xfail(
                strict=True, reason="citations still to be added to this chapter"
            ),
        )
        if n in CITATIONS_PENDING
        else n
        for n in NB_IDS
    ],
)
def test_author_year_mentions_are_cited_in_the_same_cell(nb):
    entries = _bib_entries()
    uncited, n_mentions = [], 0
    for cid, src in _prose(REPO / nb):
        cited = [entries[k] for k in _cited_keys(src) if k in entries]
        for text, surname, year in _mentions(src):
            n_mentions += 1
            if not any(_same_author(e["first"], surname) and e["year"] == year for e in cited):
                uncited.append(f"cell {cid}: {text!r}")
        for text, surname in _bare_mentions(src):
            if not any(_same_author(e["first"], surname) for e in cited):
                uncited.append(f"cell {cid}: {text!r} (no year: cite the work in this cell)")
    assert not uncited, (
        f"{nb}: author-year mentions without a citation of that work in the same cell "
        "(write {cite:t}`key` for 'Name et al. (YYYY)', {cite:p}`key` for '(Name et al., YYYY)'):\n"
        + "\n".join(uncited)
    )


def test_cited_works_are_in_the_chapters_reference_list():
    entries = _bib_entries()
    missing, checked = [], 0
    for path in NOTEBOOKS:
        items = [(_fold(item[:60]), item) for item in _references(path)]
        for cid, src in _prose(path):
            for key in dict.fromkeys(_cited_keys(src)):
                e = entries.get(key)
                if e is None:
                    continue  # reported by test_every_cited_key_is_in_the_bibliography
                checked += 1
                ok = any(
                    folded.startswith(e["first"][:12]) and (e["year"] is None or e["year"] in item)
                    for folded, item in items
                )
                if not ok:
                    missing.append(f"{_rel(path)} cell {cid}: {key}")
    assert checked >= 200, checked
    assert not missing, (
        "works cited in a chapter but absent from its References list (first author and year):\n"
        + "\n".join(sorted(set(missing)))
    )


# --------------------------------------------------------------------------------------------
# Chapters and parts named in the prose
# --------------------------------------------------------------------------------------------


def test_toc_numbering_matches_the_notebook_titles():
    counts, numbers = _toc_numbers()
    assert counts and all(counts[p] > 0 for p in range(1, 6)), counts
    toc = yaml.safe_load(TOC.read_text(encoding="utf-8"))
    for part in toc["parts"]:
        m = re.match(r"\s*Part\s+(\d+)\b", part.get("caption", ""))
        if not m:
            continue
        chapters = [c["file"] for c in part["chapters"] if c["file"].startswith("notebooks/")]
        for i, f in enumerate(chapters, 1):
            assert _chapter_number(REPO / f"{f}.ipynb") == f"{m.group(1)}.{i}", f


@pytest.mark.parametrize("nb", NB_IDS)
def test_prose_names_only_chapters_and_parts_that_exist(nb):
    counts, numbers = _toc_numbers()
    problems, n_refs = [], 0
    for cid, src in _prose(REPO / nb):
        text = _strip_code(src)
        for m in CHAPTER_REF.finditer(text):
            for number in _expand(m.group(1), r"\d+\.\d+"):
                n_refs += 1
                if number not in numbers:
                    problems.append(
                        f"cell {cid}: {m.group(0)!r} names chapter {number}, not in _toc.yml"
                    )
        for m in BARE_CHAPTER.finditer(text):
            problems.append(
                f"cell {cid}: {m.group(0)!r}: no such chapter "
                "(chapters are numbered part.chapter, e.g. 3.4)"
            )
        for sentence in _sentences(text):
            for m in PART_REF.finditer(sentence):
                for number in _expand(m.group(1), r"\d+"):
                    n_refs += 1
                    p = int(number)
                    if p not in counts:
                        problems.append(f"cell {cid}: {m.group(0)!r}: there is no part {p}")
                    elif counts[p] == 0 and not NOT_WRITTEN.search(sentence):
                        problems.append(
                            f"cell {cid}: {m.group(0)!r}: part {p} has no chapters yet, and the "
                            f"sentence does not say so: {' '.join(sentence.split())!r}"
                        )
        for m in VAGUE_PROMISE.finditer(text):
            problems.append(f"cell {cid}: {m.group(0)!r}: name the chapter that does it")
    assert not problems, f"{nb}:\n" + "\n".join(problems)


def test_chapter_references_are_found():
    """The reference patterns above do see the prose's cross-references (not vacuous)."""
    n = sum(
        len(_expand(m.group(1), r"\d+\.\d+"))
        for path in NOTEBOOKS
        for _, src in _prose(path)
        for m in CHAPTER_REF.finditer(_strip_code(src))
    )
    assert n >= 100, n
    bare = [m.group(0) for m in BARE_CHAPTER.finditer("Chapter 6 discusses; chapter 3.4 does")]
    assert bare == ["Chapter 6"]
    assert _expand("5.7 to 5.9, 3.1 and 5.1", r"\d+\.\d+") == ["5.7", "5.8", "5.9", "3.1", "5.1"]
    assert VAGUE_PROMISE.search("A later chapter implements BPE")
    assert VAGUE_PROMISE.search("later chapters on MNIST")
    assert not VAGUE_PROMISE.search("Every later chapter trains with fit")
