"""Record the reference output of every ``# NBVAL_CHECK_OUTPUT`` cell into
``notebooks/checked_outputs.json`` by running the notebooks in fast mode (as CI does).

Usage: AIGC_DATA_DIR=... python scripts/record_checked_outputs.py [NOTEBOOK ...]
(default: every notebook that has a checked cell). Review the diff of the JSON before committing:
a changed value is exactly what nbval would have reported.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from strip_outputs import is_checked

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "notebooks" / "checked_outputs.json"


def record(path: Path) -> dict[str, str]:
    nb = nbformat.read(path, as_version=4)
    if not any(is_checked(c) for c in nb.cells):
        return {}
    os.environ["AIGC_FAST"] = "1"
    NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(path.parent)}}).execute()
    out = {}
    for cell in nb.cells:
        if is_checked(cell):
            out[cell["id"]] = "".join(o.get("text", "") for o in cell.outputs
                                      if o.get("output_type") == "stream" and o.get("name") == "stdout")
    return out


def main(argv: list[str]) -> int:
    paths = [Path(a).resolve() for a in argv] or sorted((REPO / "notebooks").rglob("*.ipynb"))
    reference = json.loads(REFERENCE.read_text(encoding="utf-8")) if REFERENCE.is_file() else {}
    for path in paths:
        key = path.relative_to(REPO / "notebooks").as_posix()
        texts = record(path)
        if texts:
            reference[key] = texts
            print(f"{key}: {len(texts)} checked cells")
        else:
            reference.pop(key, None)
    REFERENCE.write_text(json.dumps(reference, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
