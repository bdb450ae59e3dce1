"""Strip outputs, execution counts and volatile metadata from notebooks (run before committing).

The reference outputs of cells marked ``# NBVAL_CHECK_OUTPUT`` live in
``notebooks/checked_outputs.json`` (see ``notebooks/conftest.py`` and
``scripts/record_checked_outputs.py``), so every output is stripped here.

Usage: python scripts/strip_outputs.py [PATH ...]   (folders are searched for *.ipynb)
       python scripts/strip_outputs.py --check PATH  (exit 1 if a notebook has outputs)
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

KEEP_NB_META = ("kernelspec", "language_info")
MARK = "NBVAL_CHECK_OUTPUT"


def is_checked(cell: dict) -> bool:
    src = "".join(cell.get("source", []))
    return cell.get("cell_type") == "code" and src.lstrip().startswith("# " + MARK)


def _ensure_ids(nb: dict) -> None:
    """nbformat 4.5 wants a unique id per cell; give hand-inserted cells a stable one."""
    if (nb.get("nbformat"), nb.get("nbformat_minor", 0)) < (4, 5):
        return
    seen = {c["id"] for c in nb.get("cells", []) if "id" in c}
    for i, cell in enumerate(nb.get("cells", [])):
        if "id" not in cell:
            digest = hashlib.sha1(f"{i}:{''.join(cell.get('source', []))}".encode()).hexdigest()
            new = digest[:8]
            while new in seen:
                digest = hashlib.sha1(digest.encode()).hexdigest()
                new = digest[:8]
            cell["id"] = new
            seen.add(new)


def strip(nb: dict) -> dict:
    _ensure_ids(nb)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell.get("metadata", {}).pop("execution", None)
        cell.get("metadata", {}).pop("ExecuteTime", None)
    nb["metadata"] = {k: v for k, v in nb.get("metadata", {}).items() if k in KEEP_NB_META}
    nb["metadata"].setdefault("kernelspec", {"display_name": "Python 3", "language": "python", "name": "python3"})
    nb["metadata"]["language_info"] = {"name": "python"}
    return nb


def has_outputs(nb: dict) -> bool:
    return any(c.get("outputs") or c.get("execution_count") for c in nb.get("cells", []) if c.get("cell_type") == "code")


def main(argv: list[str]) -> int:
    check = "--check" in argv
    paths = [Path(a) for a in argv if a != "--check"] or [Path("notebooks")]
    files = [f for p in paths for f in (sorted(p.rglob("*.ipynb")) if p.is_dir() else [p])]
    files = [f for f in files if ".ipynb_checkpoints" not in f.parts]
    bad = 0
    for f in files:
        nb = json.loads(f.read_text(encoding="utf-8"))
        if check:
            if has_outputs(nb):
                print(f"{f}: has outputs")
                bad += 1
            continue
        f.write_text(json.dumps(strip(nb), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
