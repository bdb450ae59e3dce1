"""Numbers in the prose come from the computation: the drift check of ``scripts/check_numbers.py``.

The check compares every decimal of every chapter's prose with what the chapter's last full-mode
run printed (``book/measured_numbers.json``, recorded by ``make book``), its own code, the
shipped cards and benchmark results, and citations. It executes nothing, so it runs in CI's fast
mode; a prose number that no output, code or citation accounts for fails here.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_numbers", ROOT / "scripts" / "check_numbers.py")
check_numbers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_numbers)


def test_prose_matches_rounded_outputs_only():
    out = [0.8654, 0.874, 59.8, 1234.5]
    assert check_numbers._matches("0.87", out)  # rounded as the prose rounds
    assert check_numbers._matches("87.4%", out)  # a fraction quoted as a percentage
    assert check_numbers._matches("1,234.5", out)
    assert not check_numbers._matches("0.86", out)  # 0.8654 rounds to 0.87, not 0.86
    assert not check_numbers._matches("60.65", out)  # another run's number
    assert not check_numbers._matches("0.865", [0.864])


def test_decimals_are_found_in_prose_but_not_in_versions_paths_or_math():
    text = check_numbers._strip_markdown(
        "Loss 4.174 -> 3.309 (0.865 nats), see `lr=3e-3` and $\\ln 65 \\approx 4.17$; GPT-3.5, v1.2, "
        "file 2.3.tar, 87.4% of pairs.")
    found = [m.group(0) for m in check_numbers.PROSE_DECIMAL.finditer(text)]
    assert found == ["4.174", "3.309", "0.865", "87.4%"]


def test_every_chapter_has_recorded_full_mode_outputs():
    measured = json.loads(check_numbers.MEASURED.read_text(encoding="utf-8"))
    chapters = {check_numbers.chapter_key(p) for p in check_numbers.chapters()}
    assert set(measured) == chapters, f"no full-mode record for {sorted(chapters - set(measured))}: run make book"
    assert sum(len(v) for v in measured.values()) > 1000  # real outputs, not an empty record


def test_allowlist_entries_give_a_reason():
    allow = json.loads(check_numbers.ALLOWLIST.read_text(encoding="utf-8"))
    for chapter, entries in allow.items():
        assert (ROOT / "notebooks" / chapter).is_file(), chapter
        for entry in entries:
            assert set(entry) == {"number", "reason"} and len(entry["reason"]) > 15, entry


def test_no_prose_number_drifts_from_the_computation():
    problems = check_numbers.check()
    listing = "\n".join(f"{p['chapter']}: {p['number']} -- {p['context']}" for p in problems)
    assert not problems, f"{len(problems)} prose decimals that no output, code or citation accounts for:\n{listing}"
