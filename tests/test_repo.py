"""Repository hygiene: lint, stripped notebooks, every notebook in the table of contents."""

import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from strip_outputs import has_outputs  # noqa: E402


def test_ruff_is_clean():
    ruff = Path(sys.executable).parent / "ruff"
    proc = subprocess.run([str(ruff), "check", "src", "tests", "notebooks", "scripts", "bench"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_notebooks_are_stripped_and_in_the_toc():
    toc = (REPO / "_toc.yml").read_text()
    for nb_path in sorted((REPO / "notebooks").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in nb_path.parts:
            continue
        nb = json.loads(nb_path.read_text(encoding="utf-8"))
        assert not has_outputs(nb), f"{nb_path.name}: strip outputs (python scripts/strip_outputs.py)"
        rel = nb_path.relative_to(REPO).with_suffix("").as_posix()
        assert f"file: {rel}" in toc, f"{rel} is not in _toc.yml"


def test_every_notebook_starts_with_title_and_setup_cell():
    for nb_path in sorted((REPO / "notebooks").rglob("*.ipynb")):
        cells = json.loads(nb_path.read_text(encoding="utf-8"))["cells"]
        assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# ")
        first_code = next(c for c in cells if c["cell_type"] == "code")
        src = "".join(first_code["source"])
        assert "google.colab" in src and "ac.setup(" in src, f"{nb_path.name}: setup cell"
        text = " ".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        assert "## Exercises" in text and "## Summary" in text and "## References" in text, nb_path.name
        assert len(text.split()) >= 900, f"{nb_path.name}: {len(text.split())} words of prose"


def test_toc_yaml_is_valid():
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    assert toc["format"] == "jb-book" and len(toc["parts"]) == 8


def test_checked_cells_only_print():
    """NBVAL_CHECK_OUTPUT cells are compared as text: a figure in one would fail in CI."""
    from strip_outputs import is_checked

    reference = json.loads((REPO / "notebooks" / "checked_outputs.json").read_text(encoding="utf-8"))
    for nb_path in sorted((REPO / "notebooks").rglob("*.ipynb")):
        for cell in json.loads(nb_path.read_text(encoding="utf-8"))["cells"]:
            if is_checked(cell):
                src = "".join(cell["source"])
                assert "plt." not in src and "display(" not in src and "ac.pick" not in src, (
                    f"{nb_path.name}: a checked cell draws a figure or depends on the mode:\n{src[:200]}")
                key = nb_path.relative_to(REPO / "notebooks").as_posix()
                assert cell.get("id") in reference.get(key, {}), (
                    f"{key}: a checked cell has no reference output: run scripts/record_checked_outputs.py")
