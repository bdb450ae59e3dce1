"""The book's execution cache (scripts/build_book.py, called by `make book` and `make book-fast`).

A tiny book of two notebooks is built in a temporary folder with the Makefile's own command line.
Each notebook appends "<name> <mode>" to ``executions.log`` when it runs, so the test counts
executions: a rebuild with nothing changed runs nothing, an edited notebook runs again alone, the
full mode never reuses the fast mode's outputs, a failing notebook keeps failing on the next
build, and a change to the course package runs every notebook again. Six builds of ~6-12 s each.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "build_book.py"
pytestmark = pytest.mark.slow

_CODE = """\
import os
mode = "fast" if os.environ.get("AIGC_FAST") == "1" else "full"
with open("executions.log", "a") as f:
    f.write("{name} " + mode + "\\n")
print("notebook {name} ran in", mode, "mode")"""
_FAIL = """\
if os.environ.get("TINY_BOOK_FAIL") == "1":
    raise RuntimeError("this notebook fails while TINY_BOOK_FAIL=1")"""


def _load_script():
    spec = importlib.util.spec_from_file_location("build_book", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_notebook(path: Path, *codes: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(f"# Notebook {path.stem}")]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in codes]
    nbformat.write(nb, path)


def _make_book(root: Path) -> Path:
    book = root / "book"
    book.mkdir()
    # The course's own execution settings (timeout, stderr, errors); the rest stays minimal.
    execute = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8"))["execute"]
    config = {"title": "Tiny", "only_build_toc_files": True, "execute": execute}
    (book / "_config.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (book / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: a\n  - file: b\n")
    (book / "intro.md").write_text("# Tiny book\n\nTwo notebooks.\n")
    _write_notebook(book / "a.ipynb", _CODE.format(name="a"))
    _write_notebook(book / "b.ipynb", _CODE.format(name="b"), _FAIL)
    pkg = book / "src" / "aigc_course"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("VERSION = 1\n")
    (pkg / "weights").mkdir()
    (pkg / "weights" / "tiny.safetensors").write_bytes(b"\x00" * 16)
    return book


def _make_command(target: str) -> list[str]:
    """The Makefile's command line for `target`, without running it (or its setup step)."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    proc = subprocess.run([make, "-s", "--no-print-directory", "-n", "-o", "setup", target],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if "scripts/build_book.py" in ln]
    assert len(lines) == 1, f"`make {target}` should call scripts/build_book.py once:\n{proc.stdout}"
    return shlex.split(lines[0])


def _build_args(target: str, mode: str) -> list[str]:
    """The Makefile's arguments to scripts/build_book.py, for a build of the tiny book."""
    argv = _make_command(target)
    args = argv[argv.index(next(a for a in argv if a.endswith("scripts/build_book.py"))) + 1:]
    assert args[0] == mode, f"`make {target}` builds in {args[0]} mode"
    if "--path-output" in args:  # the tiny book gets the default: <source>/_build/<mode>
        i = args.index("--path-output")
        assert args[i + 1] == f"_build/{mode}"
        del args[i:i + 2]
    return args


def test_make_targets_build_through_the_cache_with_the_usual_options():
    for target, mode in [("book", "full"), ("book-fast", "fast")]:
        args = _build_args(target, mode)
        assert {"-W", "-n", "--keep-going"} <= set(args), f"`make {target}`: {args}"
    # A hand-run `jupyter-book build .` must not reuse one mode's outputs for the other.
    config = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8"))
    assert config["execute"]["execute_notebooks"] == "force"


def test_cache_folder_depends_on_mode_package_weights_and_results(tmp_path, monkeypatch):
    monkeypatch.delenv("AIGC_DEVICE", raising=False)
    bb = _load_script()
    book = _make_book(tmp_path)
    out = book / "_build"
    fast, full = bb.cache_dir("fast", book, out / "fast"), bb.cache_dir("full", book, out / "full")
    assert fast.parent != full.parent and fast.name != full.name
    assert fast.name.startswith("fast-") and full.name.startswith("full-")
    assert bb.cache_dir("fast", book, out / "fast") == fast  # stable
    # The same output folder for both modes still gives two caches.
    assert bb.cache_dir("full", book, out / "fast") != fast
    (book / "src" / "aigc_course" / "__init__.py").write_text("VERSION = 2\n")
    code_changed = bb.cache_dir("fast", book, out / "fast")
    assert code_changed != fast
    (book / "src" / "aigc_course" / "weights" / "tiny.safetensors").write_bytes(b"\x01" * 16)
    weights_changed = bb.cache_dir("fast", book, out / "fast")
    assert weights_changed not in (fast, code_changed)
    # Compiled files do not count.
    (book / "src" / "aigc_course" / "__pycache__").mkdir()
    (book / "src" / "aigc_course" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"x")
    assert bb.cache_dir("fast", book, out / "fast") == weights_changed
    # The benchmark results that chapters plot ship in the package, so they count; so does the device.
    (book / "src" / "aigc_course" / "studies" / "results").mkdir(parents=True)
    (book / "src" / "aigc_course" / "studies" / "results" / "gpt_cpu.json").write_text("{}")
    results_changed = bb.cache_dir("fast", book, out / "fast")
    assert results_changed != weights_changed
    weights_changed = results_changed
    monkeypatch.setenv("AIGC_DEVICE", "cpu")
    assert bb.cache_dir("fast", book, out / "fast") != weights_changed
    monkeypatch.delenv("AIGC_DEVICE")

    # Pruning keeps the current folder and the most recent other one.
    folders = [fast, code_changed, weights_changed]
    for i, p in enumerate(folders):
        p.mkdir(parents=True)
        os.utime(p, (1_000_000 + i, 1_000_000 + i))
    (fast.parent / "not-a-cache").mkdir()
    removed = bb.prune(fast, keep=2)
    assert removed == [code_changed]
    assert fast.is_dir() and weights_changed.is_dir() and (fast.parent / "not-a-cache").is_dir()


def test_rebuilds_execute_only_what_changed_and_modes_never_share(tmp_path):
    book = _make_book(tmp_path)
    log = book / "executions.log"
    fast_args, full_args = _build_args("book-fast", "fast"), _build_args("book", "full")

    def build(args, **env_extra):
        if log.exists():
            log.unlink()
        env = {k: v for k, v in os.environ.items() if k not in ("AIGC_FAST", "TINY_BOOK_FAIL")}
        env.update(env_extra)
        cmd = [sys.executable, str(SCRIPT), args[0], "--source", str(book), *args[1:]]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        ran = sorted(log.read_text().splitlines()) if log.exists() else []
        return proc.returncode, ran, proc.stdout + proc.stderr

    def html(mode, page):
        return (book / "_build" / mode / "_build" / "html" / f"{page}.html").read_text(encoding="utf-8")

    # 1. First fast build: both notebooks run, in fast mode.
    rc, ran, out = build(fast_args)
    assert rc == 0, out[-4000:]
    assert ran == ["a fast", "b fast"], out[-4000:]
    assert "notebook a ran in fast mode" in html("fast", "a")

    # 2. Nothing changed: nothing runs. (The script sets the mode itself: AIGC_FAST=0 here, or
    #    AIGC_FAST=1 for the full build below, in the caller's environment changes nothing.)
    rc, ran, out = build(fast_args, AIGC_FAST="0")
    assert rc == 0, out[-4000:]
    assert ran == [], out[-4000:]

    # 3. One notebook's code edited: only that one runs; the page shows its new output.
    _write_notebook(book / "a.ipynb", _CODE.format(name="a") + "\nprint('edited once')")
    rc, ran, out = build(fast_args)
    assert rc == 0, out[-4000:]
    assert ran == ["a fast"], out[-4000:]
    assert "edited once" in html("fast", "a")

    # 4. The full build reuses nothing from the fast one: both run again, in full mode. Notebook
    #    b fails in this build (its failure depends on the environment, which no cache sees).
    rc, ran, out = build(full_args, AIGC_FAST="1", TINY_BOOK_FAIL="1")
    assert rc != 0, "a failing notebook must fail the build"
    assert ran == ["a full", "b full"], out[-4000:]
    assert "notebook a ran in full mode" in html("full", "a")
    assert "fast mode" not in html("full", "a")

    # 5. Rebuilt with b still failing: b runs (and fails) again, a comes from the cache.
    rc, ran, out = build(full_args, TINY_BOOK_FAIL="1")
    assert rc != 0, "the rebuild passed although notebook b still fails"
    assert ran == ["b full"], out[-4000:]

    # The fast build's outputs are untouched by the full builds.
    assert "notebook a ran in fast mode" in html("fast", "a")
    assert "edited once" in html("fast", "a")

    # 6. The course package changed (the cache cannot see it): every notebook runs again.
    (book / "src" / "aigc_course" / "__init__.py").write_text("VERSION = 2\n")
    rc, ran, out = build(fast_args)
    assert rc == 0, out[-4000:]
    assert ran == ["a fast", "b fast"], out[-4000:]
    caches = sorted(p.name.split("-")[0] for p in (book / "_build").glob("*/.jupyter_cache/*"))
    assert caches == ["fast", "fast", "full"]  # the previous fast cache is kept (--keep 2)
