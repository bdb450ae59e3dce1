"""The book's front matter stays true to what exists.

* Every chapter in ``_toc.yml`` is linked, with a ``{doc}`` role and in toc order, from the
  landing page of its part, and every ``{doc}`` link of the front matter points to a file that
  exists and is in the table of contents (a broken link fails the ``-W`` book build).
* The introduction does not call a part that has chapters "being written", and it does say so of
  a part that has none; the chapter count it quotes is the toc's.
* Part 5's page names as shipped weights only weights that ship and that its notebooks use.
* The glossary: at least 200 entries, each with a Chinese name and a link to an existing
  chapter notebook; the basic terms a beginner looks up first are there with their standard
  Chinese names; "Inception" stays a name in the Chinese of FID, KID and IS.

These tests read text files only; they need no network, no data and no kernel.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "book"
TOC = REPO / "_toc.yml"

DOC_ROLE = re.compile(r"\{doc\}`([^`]+)`")
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Words that say a part does not exist yet.
FORTHCOMING = re.compile(
    r"being written|not\s+(?:yet\s+)?(?:been\s+)?written|not\s+written\s+yet|to\s+be\s+written"
    r"|forthcoming|coming\s+soon|in\s+preparation|under\s+construction|work\s+in\s+progress"
    r"|planned|will\s+(?:hold|cover|contain)",
    re.IGNORECASE,
)
# "Part 6", "parts 3 to 6", "Parts 1, 2 and 5", "parts 3-5"
PART_REF = re.compile(r"\bparts?\s+(\d+(?:\s*(?:,|and|or|to|-|–)\s*\d+)*)", re.IGNORECASE)
TABLE_PART = re.compile(r"^\|\s*(\d+)\s*·")


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _flatten(entries: list[dict]) -> list[str]:
    files: list[str] = []
    for e in entries:
        if "file" in e:
            files.append(e["file"])
        files.extend(_flatten(e.get("sections", [])))
    return files


def _toc() -> dict:
    return yaml.safe_load(TOC.read_text(encoding="utf-8"))


def _toc_files() -> set[str]:
    toc = _toc()
    files = {toc["root"]}
    for part in toc["parts"]:
        if "file" in part:
            files.add(part["file"])
        files.update(_flatten(part.get("chapters", [])))
    return files


def _parts() -> dict[int, tuple[str, list[str]]]:
    """{part number: (landing page, [chapter files])} for the numbered parts of the toc.

    The landing page is the part's own ``file`` if it has one, otherwise its first entry; the
    chapters are every other file under the part, nested sections included.
    """
    parts = {}
    for part in _toc()["parts"]:
        m = re.match(r"\s*Part\s+(\d+)\b", part.get("caption", ""))
        if not m:
            continue
        files = _flatten(part.get("chapters", []))
        if "file" in part:
            landing, chapters = part["file"], files
        else:
            landing, chapters = files[0], files[1:]
        parts[int(m.group(1))] = (landing, chapters)
    return parts


def _resolve(target: str, page: Path) -> str:
    """The repository-relative docname (no suffix) a {doc} target on ``page`` points to."""
    inner = re.search(r"<([^<>]+)>\s*$", target)  # {doc}`title <target>`
    target = (inner.group(1) if inner else target).strip()
    for suffix in (".md", ".ipynb"):
        if target.endswith(suffix):
            target = target[: -len(suffix)]
    base = REPO if target.startswith("/") else page.parent
    path = os.path.normpath(base / target.lstrip("/"))
    return Path(os.path.relpath(path, REPO)).as_posix()


def _doc_links(page: Path, text: str | None = None) -> list[str]:
    text = page.read_text(encoding="utf-8") if text is None else text
    return [_resolve(m.group(1), page) for m in DOC_ROLE.finditer(text)]


def _exists(docname: str) -> bool:
    return any((REPO / f"{docname}{s}").is_file() for s in (".md", ".ipynb"))


def _part_numbers(segment: str) -> set[int]:
    nums: set[int] = set()
    m = TABLE_PART.match(segment)
    if m:
        nums.add(int(m.group(1)))
    for ref in PART_REF.finditer(segment):
        tokens = re.findall(r"\d+|to|-|–", ref.group(1))
        i = 0
        while i < len(tokens):
            a = int(tokens[i])
            if i + 2 < len(tokens) and tokens[i + 1] in ("to", "-", "–"):
                nums.update(range(a, int(tokens[i + 2]) + 1))
                i += 3
            else:
                nums.add(a)
                i += 1
    return nums


def _segments(text: str) -> list[str]:
    """Table rows one by one, and the prose split into sentences and semicolon clauses."""
    rows = [line for line in text.splitlines() if line.lstrip().startswith("|")]
    prose = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("|"))
    clauses = [c.strip() for c in re.split(r"(?<=[.;!?])\s+|\n\s*\n", prose) if c.strip()]
    return rows + clauses


def _glossary_body() -> tuple[str, list[str]]:
    text = (BOOK / "glossary.md").read_text(encoding="utf-8")
    m = re.search(r"^```\{glossary\}[^\n]*\n(.*?)^```\s*$", text, re.DOTALL | re.MULTILINE)
    assert m, "book/glossary.md has no ```{glossary} block"
    body = m.group(1)
    lines = body.split("\n")
    options = [line for line in lines if line.startswith(":")]
    return body, options


def _glossary() -> list[tuple[str, str]]:
    """[(term line, definition text)] in file order, parsed line by line."""
    body, _ = _glossary_body()
    entries: list[list] = []
    previous_was_term = False
    for line in body.split("\n"):
        if line.startswith(":") and not entries:  # directive options come first
            continue
        if not line.strip():
            previous_was_term = False
            continue
        if not line[0].isspace():
            assert not previous_was_term, f"two term lines in a row (no definition?): {line!r}"
            entries.append([line.strip(), []])
            previous_was_term = True
        else:
            assert entries, f"definition line before any term: {line!r}"
            entries[-1][1].append(line.strip())
            previous_was_term = False
    return [(term, " ".join(d)) for term, d in entries]


def _english(term: str) -> str:
    """The English head of a term line: 'Softmax (softmax 函数, ...)' -> 'softmax'."""
    return term.split(" (")[0].strip().lower()


def _chinese(term: str) -> str:
    """The text inside the last top-level parentheses of a term line."""
    depth, start = 0, None
    for i, ch in enumerate(term):
        if ch == "(":
            if depth == 0:
                start = i
            depth += 1
        elif ch == ")":
            depth -= 1
    assert start is not None and term.rstrip().endswith(")"), f"no (中文) part: {term!r}"
    return term[start + 1 : term.rstrip().rfind(")")]


# --------------------------------------------------------------------------------------------
# The table of contents and the part pages
# --------------------------------------------------------------------------------------------


def test_toc_parts_are_parsed():
    parts = _parts()
    assert sorted(parts) == list(range(1, len(parts) + 1)) and len(parts) >= 6, sorted(parts)
    for number, (landing, _) in parts.items():
        assert landing == f"book/part{number}", (number, landing)
        assert (REPO / f"{landing}.md").is_file(), landing
    # An independent count: every notebook under notebooks/ is a chapter of exactly one part.
    chapters = [c for _, cs in parts.values() for c in cs]
    notebooks = sorted(p.relative_to(REPO).with_suffix("").as_posix()
                       for p in (REPO / "notebooks").rglob("*.ipynb")
                       if ".ipynb_checkpoints" not in p.parts)
    assert sorted(chapters) == notebooks


@pytest.mark.parametrize("number", sorted(_parts()))
def test_every_chapter_is_linked_from_its_part_page(number):
    landing, chapters = _parts()[number]
    page = REPO / f"{landing}.md"
    links = _doc_links(page)
    missing = [c for c in chapters if c not in links]
    assert not missing, f"{landing}.md does not link (with {{doc}}) to: {missing}"
    order = [links.index(c) for c in chapters]
    assert order == sorted(order), f"{landing}.md lists its chapters out of toc order"


@pytest.mark.parametrize("number", sorted(_parts()))
def test_part_page_says_whether_the_part_is_written(number):
    landing, chapters = _parts()[number]
    text = (REPO / f"{landing}.md").read_text(encoding="utf-8")
    not_yet = re.search(r"being written|not\s+(?:yet\s+)?(?:been\s+)?written|planned chapters",
                        text, re.IGNORECASE)
    if chapters:
        assert not not_yet, f"{landing}.md calls a part with {len(chapters)} chapters unwritten"
    else:
        assert not_yet, f"{landing}.md must say plainly that the part is not written yet"


@pytest.mark.parametrize("page", ["intro", "part1", "part2", "part3", "part4", "part5", "part6",
                                  "glossary"])
def test_doc_links_point_to_files_in_the_toc(page):
    path = BOOK / f"{page}.md"
    toc_files = _toc_files()
    links = _doc_links(path)
    broken = [d for d in links if not _exists(d)]
    assert not broken, f"book/{page}.md links to missing files: {broken}"
    outside = [d for d in links if d not in toc_files]
    assert not outside, f"book/{page}.md links to pages outside _toc.yml: {outside}"


def test_link_resolution_helper():
    page = BOOK / "part3.md"
    assert _resolve("../notebooks/03_algorithms/06_vae", page) == "notebooks/03_algorithms/06_vae"
    assert _resolve("the VAE <../notebooks/03_algorithms/06_vae>", page) == \
        "notebooks/03_algorithms/06_vae"
    assert _resolve("/notebooks/03_algorithms/06_vae.ipynb", page) == \
        "notebooks/03_algorithms/06_vae"
    assert _resolve("setup", page) == "book/setup"
    assert not _exists("notebooks/03_algorithms/06_vaee")


# --------------------------------------------------------------------------------------------
# The introduction
# --------------------------------------------------------------------------------------------


def test_part_reference_parser():
    assert _part_numbers("parts 3 to 6 are being written") == {3, 4, 5, 6}
    assert _part_numbers("Parts 1 and 2 are complete") == {1, 2}
    assert _part_numbers("Part 6, on applications, has not been written yet") == {6}
    assert _part_numbers("Parts 1, 2 and 5") == {1, 2, 5}
    assert _part_numbers("| 6 · Applications (not yet written) | ... |") == {6}
    segments = _segments("Parts 1 and 2 are complete; parts 3 to 6 are being written.")
    flagged = set().union(*(_part_numbers(s) for s in segments if FORTHCOMING.search(s)))
    assert flagged == {3, 4, 5, 6}


def _intro_forthcoming() -> set[int]:
    text = (BOOK / "intro.md").read_text(encoding="utf-8")
    flagged: set[int] = set()
    for segment in _segments(text):
        if FORTHCOMING.search(segment):
            flagged |= _part_numbers(segment)
    return flagged


def test_intro_does_not_call_written_parts_forthcoming():
    written = {n for n, (_, chapters) in _parts().items() if chapters}
    assert written, "no part has chapters: the toc was not parsed"
    wrong = _intro_forthcoming() & written
    assert not wrong, f"intro.md says parts {sorted(wrong)} are still to come; they have chapters"


def test_intro_says_unwritten_parts_are_forthcoming():
    unwritten = {n for n, (_, chapters) in _parts().items() if not chapters}
    missing = unwritten - _intro_forthcoming()
    assert not missing, f"intro.md should say that parts {sorted(missing)} are not written yet"


def test_intro_chapter_count_matches_the_toc():
    text = (BOOK / "intro.md").read_text(encoding="utf-8")
    total = sum(len(chapters) for _, chapters in _parts().values())
    for m in re.finditer(r"\b(\d+)\s+chapters\b", text):
        assert int(m.group(1)) == total, f"intro.md says {m.group(0)}; the toc has {total}"


# --------------------------------------------------------------------------------------------
# Part 5 and the shipped weights
# --------------------------------------------------------------------------------------------


def _shipped_weights() -> set[str]:
    names = set()
    for card in (REPO / "src").rglob("weights/*.json"):
        if card.with_suffix(".safetensors").is_file():
            names.add(card.stem)
    return names


def test_part5_names_only_weights_that_ship_and_are_used():
    shipped = _shipped_weights()
    if not shipped:
        pytest.skip("no weights folder found under src/")
    page = BOOK / "part5.md"
    landing, chapters = _parts()[5]
    assert landing == "book/part5"
    text = page.read_text(encoding="utf-8")
    bullets = re.split(r"\n(?=- )", text)
    claims = 0
    for bullet in bullets:
        links = [d for d in _doc_links(page, bullet) if d in chapters]
        if not links or "Weights:" not in bullet:
            continue
        notebook = (REPO / f"{links[0]}.ipynb").read_text(encoding="utf-8")
        for name in re.findall(r"`([a-z0-9_]+)`", bullet.split("Weights:", 1)[1]):
            claims += 1
            assert name in shipped, f"part5.md: {links[0]} claims weights {name!r} that do not ship"
            assert name in notebook, f"part5.md: {links[0]} does not use the weights {name!r}"
    assert claims, "part5.md names no shipped weights at all: the bullets were not parsed"
    without = [c for c in chapters
               if not any(n in (REPO / f"{c}.ipynb").read_text(encoding="utf-8") for n in shipped)]
    every = re.search(r"\b(each|every|all)\s+(projects?|chapters?)\s+ships?\b", text, re.IGNORECASE)
    assert not (without and every), f"part5.md says every project ships weights; {without} do not"


# --------------------------------------------------------------------------------------------
# The glossary
# --------------------------------------------------------------------------------------------

# English head of the term -> substrings of which the Chinese name must contain at least one.
BASIC_TERMS = {
    "softmax": ["softmax", "归一化指数函数"],
    "kl divergence": ["KL 散度"],
    "entropy": ["熵"],
    "self-attention": ["自注意力"],
    ("layer normalisation", "layer normalization", "layernorm"): ["层归一化"],
    "residual connection": ["残差连接"],
    "u-net": ["U-Net"],
    "clip": ["CLIP"],
    "stable diffusion": ["Stable Diffusion", "稳定扩散"],
    "prompt": ["提示词"],
    "learning rate": ["学习率"],
    "adam": ["Adam"],
    ("batch", "mini-batch", "minibatch"): ["批次", "小批量"],
    "epoch": ["轮次"],
    ("prior", "prior distribution"): ["先验"],
    ("posterior", "posterior distribution"): ["后验"],
    "inception network": ["Inception 网络"],
}


def test_glossary_parser_agrees_with_an_independent_count():
    body, options = _glossary_body()
    entries = _glossary()
    blocks = [b for b in re.split(r"\n[ \t]*\n", body) if b.strip() and not b.startswith(":")]
    assert len(entries) == len(blocks), (len(entries), len(blocks))
    unindented = [line for line in body.split("\n")
                  if line.strip() and not line[0].isspace() and not line.startswith(":")]
    assert len(entries) == len(unindented)
    assert options == [":sorted:"]
    first_term, first_definition = entries[0]
    assert first_term == "AIGC (人工智能生成内容)"
    assert first_definition.startswith("AI-generated content")
    assert all(definition for _, definition in entries), "a term without a definition"


def test_glossary_has_at_least_200_terms():
    assert len(_glossary()) >= 200


def test_glossary_terms_are_unique():
    terms = [term.lower() for term, _ in _glossary()]
    heads = [_english(term) for term, _ in _glossary()]
    assert len(set(terms)) == len(terms), "a duplicate term fails the Sphinx build"
    duplicated = sorted({h for h in heads if heads.count(h) > 1})
    assert not duplicated, f"terms defined twice: {duplicated}"


def test_every_glossary_term_has_a_chinese_name():
    missing = [term for term, _ in _glossary() if not CJK.search(_chinese(term))]
    assert not missing, f"terms without a Chinese name: {missing}"


def test_every_glossary_term_links_the_chapter_that_teaches_it():
    page = BOOK / "glossary.md"
    chapters = {c for _, cs in _parts().values() for c in cs}
    for term, definition in _glossary():
        links = _doc_links(page, definition)
        assert links, f"{term}: no {{doc}} link"
        broken = [d for d in links if not _exists(d)]
        assert not broken, f"{term}: broken links {broken}"
        notebooks = [d for d in links if (REPO / f"{d}.ipynb").is_file() and d in chapters]
        assert notebooks, f"{term}: links no chapter notebook ({links})"


def test_glossary_has_the_basic_terms():
    by_head = {_english(term): _chinese(term) for term, _ in _glossary()}
    for heads, chinese in BASIC_TERMS.items():
        heads = (heads,) if isinstance(heads, str) else heads
        found = [h for h in heads if h in by_head]
        assert found, f"the glossary lacks {heads[0]!r}"
        name = by_head[found[0]]
        assert any(c in name for c in chinese), f"{found[0]}: Chinese {name!r}, expected {chinese}"


def test_glossary_fixed_entries():
    entries = _glossary()
    text = (BOOK / "glossary.md").read_text(encoding="utf-8")
    # Inception is the name of a network: it stays a name in Chinese.
    assert "初始距离" not in text and "初始分数" not in text
    inception = [term for term, _ in entries if "inception" in _english(term)]
    assert len(inception) >= 4, inception  # FID, KID, IS and the network itself
    for term in inception:
        assert "Inception" in _chinese(term), term
    # ROUGE-L is an F-measure of the longest common subsequence, not the subsequence itself.
    (rouge,) = [(t, d) for t, d in entries if _english(t) == "rouge-l"]
    assert _chinese(rouge[0]) != "最长公共子序列"
    for words in ("F-measure", "longest common subsequence", "candidate", "reference"):
        assert words in rouge[1], words
    # β-VAE has a Chinese name.
    (beta,) = [t for t, _ in entries if _english(t) == "β-vae"]
    assert "变分自编码器" in _chinese(beta)


def test_glossary_helpers():
    assert _english("Softmax (softmax 函数, 归一化指数函数)") == "softmax"
    assert _chinese("Precision (of a generator) (精确率(保真度))") == "精确率(保真度)"
    assert _chinese("β-VAE (β-VAE（β 变分自编码器）)") == "β-VAE（β 变分自编码器）"
    assert not CJK.search(_chinese("Inception network (Inception)"))
