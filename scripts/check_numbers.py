"""Keep the numbers in the chapters' prose equal to what the notebooks compute.

A chapter's prose quotes numbers that its full-mode run measured (a loss, an accuracy, a time).
When the code changes, those numbers drift. This script makes drift visible:

1. ``--record DIR`` reads the executed notebooks of a full-mode run (``make book`` keeps them in
   ``_build/full/_build/jupyter_execute``; ``jupyter nbconvert --execute`` writes them anywhere)
   and stores every number their outputs printed in ``book/measured_numbers.json``, one list
   per chapter. ``make book`` records after every full build.
2. Without ``--record`` it checks every decimal in every chapter's prose (markdown cells) and
   lists those that come from nowhere. A decimal is accounted for when it is
   * printed by the chapter's last full-mode run (``measured_numbers.json``), rounded as the
     prose rounds it (0.8654 -> "0.87", 0.874 -> "87.4%", 440,577 -> "0.44 M");
   * written in the chapter's own code (a hyper-parameter, a constant);
   * a metric of a shipped weights card or a shipped benchmark result;
   * cited: the sentence names a paper ({cite} role, "et al.", or a year in parentheses), or
     it stands in the chapter's reference list;
   * a chapter number ("chapter 3.4", "5.9 and 5.10") or a version ("Python 3.11", "SD 1.5");
   * inside math (``$...$``): a derivation written out by hand, which the math chapters check
     with assertions;
   * listed with a reason in ``book/number_allowlist.json``.

The check needs no execution, so CI runs it in fast mode (``tests/test_numbers.py``).
Exit status 1 when a decimal is unaccounted for; ``--json`` prints the list for tools.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
MEASURED = ROOT / "book" / "measured_numbers.json"
ALLOWLIST = ROOT / "book" / "number_allowlist.json"
PACKAGE_DATA = [ROOT / "src" / "aigc_course" / "weights", ROOT / "src" / "aigc_course" / "studies" / "results"]

# a decimal in prose: 0.87, 1,234.5, 87.4%, -0.5 (not part of a word, a version or a path)
PROSE_DECIMAL = re.compile(r"(?<![\w.\-/])(?<![A-Za-z]-)[-−]?\d[\d,]*\.\d+%?(?![\w.]*\w)")
ANY_NUMBER = re.compile(r"[-−]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?%?")
CITED = re.compile(r"\{cite|et al\.|\((?:[^()]*\b)?(?:19|20)\d\d[a-z]?\)|\b(?:19|20)\d\d[a-z]?\)|arXiv|https?://")
CHAPTER_CONTEXT = re.compile(r"(?i)(chapters?|sections?|notebooks?|parts?|§|see|in|and|,|to|then|from|^#+|\n#+)\s*$")
VERSION_CONTEXT = re.compile(r"(?i)(python|version|v|torch|pytorch|cuda|sd|diffusion|gpt|llama|jupyter book|"
                             r"numpy|transformers|diffusers|sacrebleu|release|unicode|mnist)[\s-]*$")


def chapters() -> list[Path]:
    return sorted(NOTEBOOKS.glob("0*/*.ipynb"))


def chapter_key(path: Path) -> str:
    return path.relative_to(NOTEBOOKS).as_posix()


def chapter_ids() -> set[str]:
    """"3.4" for notebooks/03_algorithms/04_...: the numbers chapters are referred to by."""
    return {f"{int(p.parent.name[:2])}.{int(p.name[:2])}" for p in chapters()}


def _strip_markdown(text: str) -> str:
    text = re.sub(r"```.*?```", " ", text, flags=re.S)  # code blocks: code, not prose
    text = re.sub(r"`[^`\n]*`", " ", text)  # inline code
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    # math is derivation written by hand (ln 65 ~ 4.17, e^-2 = 0.135): checked by the math
    # chapters' assertions, not by a run's outputs
    text = re.sub(r"\$\$.*?\$\$|\$[^$]+?\$", " ", text, flags=re.S)
    return text


def _as_float(s: str) -> float:
    return float(s.replace(",", "").replace("−", "-").rstrip("%"))


def _decimals(s: str) -> int:
    s = s.rstrip("%")
    return len(s.split(".")[1]) if "." in s else 0


def numbers_in(text: str) -> list[str]:
    """Every number of ``text``; one in scientific notation also gives its mantissa (5.85e+12 is
    quoted in prose as 5.85 x 10^12)."""
    found = ANY_NUMBER.findall(text)
    return found + [n.split("e")[0].split("E")[0] for n in found if "e" in n.lower()]


def output_text(cell: dict) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if "text" in out:
            parts.append("".join(out["text"]))
        data = out.get("data", {})
        for mime in ("text/plain", "text/markdown", "text/html", "text/latex"):
            if mime in data:
                value = data[mime]
                parts.append(re.sub(r"<[^>]+>", " ", "".join(value) if isinstance(value, list) else value))
    return "\n".join(parts)


def record(build_dir: Path) -> dict[str, list[str]]:
    """Numbers printed by the executed notebooks under ``build_dir``, keyed like the chapters."""
    executed = {p.relative_to(build_dir).as_posix(): p for p in build_dir.rglob("*.ipynb")}
    measured = json.loads(MEASURED.read_text(encoding="utf-8")) if MEASURED.exists() else {}
    found = 0
    for chapter in chapters():
        key = chapter_key(chapter)
        match = [p for rel, p in executed.items() if rel.endswith(key) and ".ipynb_checkpoints" not in rel]
        if not match:
            continue
        nb = json.loads(match[0].read_text(encoding="utf-8"))
        cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
        if not any(c.get("outputs") for c in cells):
            raise SystemExit(f"{match[0]} has no outputs: record from an executed full-mode run.")
        measured[key] = sorted(set(numbers_in("\n".join(output_text(c) for c in cells))))
        found += 1
    if not found:
        raise SystemExit(f"No executed chapter notebooks under {build_dir}.")
    MEASURED.write_text(json.dumps(measured, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    return measured


def _card_numbers() -> list[float]:
    values = []
    for folder in PACKAGE_DATA:
        for f in folder.glob("*.json") if folder.is_dir() else []:
            values += [_as_float(n) for n in numbers_in(f.read_text(encoding="utf-8")) if n not in ("-", "−")]
    return values


def _matches(prose: str, candidates: list[float], scale: float = 1.0) -> bool:
    """``prose`` equals a candidate rounded to the prose's decimals (``scale`` 1e6 for "0.44 M")."""
    x, d = _as_float(prose) * scale, _decimals(prose)
    tol = (0.5 * 10 ** -d + 1e-9) * scale
    for y in candidates:
        if abs(y - x) <= tol:
            return True
        if prose.endswith("%") and abs(100 * y - x) <= tol:
            return True
    return False


def _sentence_of(text: str, pos: int) -> str:
    start = max(text.rfind(". ", 0, pos), text.rfind("\n\n", 0, pos), 0)
    end = min([i for i in (text.find(". ", pos), text.find("\n\n", pos)) if i >= 0] or [len(text)])
    return text[start:end + 1]


def check() -> list[dict]:
    """The prose decimals of every chapter that nothing accounts for."""
    measured = json.loads(MEASURED.read_text(encoding="utf-8")) if MEASURED.exists() else {}
    allow = json.loads(ALLOWLIST.read_text(encoding="utf-8")) if ALLOWLIST.exists() else {}
    cards = _card_numbers()
    ids = chapter_ids()
    problems = []
    for chapter in chapters():
        key = chapter_key(chapter)
        nb = json.loads(chapter.read_text(encoding="utf-8"))
        code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
        candidates = [_as_float(n) for n in measured.get(key, []) + numbers_in(code) if n not in ("-", "−")]
        candidates += cards
        allowed = {entry["number"] for entry in allow.get(key, [])}
        for cell in nb["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            # the reference list quotes the papers (a baseline's published loss, a page range)
            text = _strip_markdown(re.split(r"(?m)^#+ References\s*$", "".join(cell["source"]))[0])
            for m in PROSE_DECIMAL.finditer(text):
                prose, before = m.group(0), text[max(0, m.start() - 30):m.start()]
                after = text[m.end():m.end() + 10]
                scale = 1e6 if re.match(r"\s?(M\b|M-|million)", after) else 1e3 if re.match(r"\s?(k\b|thousand)", after) else 1.0
                if prose in allowed or _matches(prose, candidates, scale):
                    continue
                if prose.rstrip("%") in ids and CHAPTER_CONTEXT.search(before):
                    continue
                if VERSION_CONTEXT.search(before):
                    continue
                sentence = _sentence_of(text, m.start())
                if CITED.search(sentence):
                    continue
                problems.append({"chapter": key, "number": prose, "cell": cell.get("id"),
                                 "context": " ".join(sentence.split())[:160]})
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", type=Path, metavar="DIR", help="store the numbers of the executed notebooks in DIR")
    parser.add_argument("--json", action="store_true", help="print the unaccounted decimals as JSON")
    args = parser.parse_args(argv)
    if args.record:
        measured = record(args.record)
        print(f"recorded the outputs of {len(measured)} chapters in {MEASURED.relative_to(ROOT)}")
    problems = check()
    if args.json:
        print(json.dumps(problems, indent=1, ensure_ascii=False))
    else:
        for p in problems:
            print(f"{p['chapter']} [{p['cell']}]: {p['number']}  -- {p['context']}")
        total = sum(1 for c in chapters() for _ in [c])
        print(f"{len(problems)} prose decimals unaccounted for in {total} chapters "
              f"(measured outputs of {len(json.loads(MEASURED.read_text()) if MEASURED.exists() else {})} chapters).")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
