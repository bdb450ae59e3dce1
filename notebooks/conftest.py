"""nbval support: reference outputs of the checked cells, kept outside the notebooks.

nbval compares a cell marked ``# NBVAL_CHECK_OUTPUT`` with the output stored in the notebook,
and skips the comparison when none is stored. The course keeps its notebooks stripped, so the
reference text of each checked cell (recorded in fast mode, as CI runs them) lives in
``checked_outputs.json``, keyed by notebook and cell id; this hook hands it to nbval's cell
items after collection. Re-record with ``python scripts/record_checked_outputs.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

ROOT = Path(__file__).parent
REFERENCE = ROOT / "checked_outputs.json"


def pytest_collection_modifyitems(session, config, items):
    reference = json.loads(REFERENCE.read_text(encoding="utf-8")) if REFERENCE.is_file() else {}
    for item in items:
        cell = getattr(item, "cell", None)
        path = Path(str(getattr(item, "path", "")))
        if cell is None or path.suffix != ".ipynb" or ROOT not in path.parents:
            continue
        text = reference.get(path.relative_to(ROOT).as_posix(), {}).get(cell.get("id"))
        if text is not None:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
            cell.execution_count = 1
