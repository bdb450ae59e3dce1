"""The book: builds with warnings as errors (fast mode) and renders offline in headless Chromium.

The build goes to ``_build/test`` (kept, so you can open it after ``make test``); screenshots of
a few pages go to ``_build/test/screenshots``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "_build" / "test"
HTML = OUT / "_build" / "html"
pytestmark = pytest.mark.slow


def _toc_files() -> list[str]:
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for e in entries:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections", []))

    for part in toc["parts"]:
        walk(part["chapters"])
    return files


@pytest.fixture(scope="session")
def built_book():
    jb = Path(sys.executable).parent / "jupyter-book"
    env = dict(os.environ, AIGC_FAST="1", AIGC_BOOK="1", AIGC_QUIET="1")
    env.pop("MPLBACKEND", None)  # the kernels must use the inline backend, or figures vanish
    shutil.rmtree(OUT, ignore_errors=True)
    proc = subprocess.run(
        [str(jb), "build", str(REPO), "--path-output", str(OUT), "-W", "-n", "--keep-going"],
        env=env, capture_output=True, text=True, timeout=1800,
    )
    log = proc.stdout + proc.stderr
    (OUT / "build.log").parent.mkdir(parents=True, exist_ok=True)
    (OUT / "build.log").write_text(log)
    assert proc.returncode == 0, f"book build failed (log in {OUT / 'build.log'}):\n{log[-6000:]}"
    return HTML


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.scripts, self.styles, self.images = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.scripts.append(a["src"])
        elif tag == "link" and a.get("rel") == "stylesheet":
            self.styles.append(a.get("href", ""))
        elif tag == "img" and a.get("src"):
            self.images.append(a["src"])


def test_every_page_is_built(built_book):
    for f in _toc_files():
        assert (built_book / f"{f}.html").is_file(), f
    assert (built_book / "searchindex.js").is_file()


def test_pages_load_nothing_from_the_internet_and_images_exist(built_book):
    for f in _toc_files():
        page = built_book / f"{f}.html"
        refs = _Refs()
        refs.feed(page.read_text(encoding="utf-8"))
        for src in refs.scripts + refs.styles:
            assert not re.match(r"(https?:)?//", src), f"{f}: loads {src} from the internet"
        for src in refs.images:
            if src.startswith("data:"):
                continue
            assert not re.match(r"(https?:)?//", src), f"{f}: image {src} from the internet"
            assert (page.parent / src.split("#")[0]).resolve().is_file(), f"{f}: missing image {src}"


def test_notebook_pages_have_figures(built_book):
    for f in _toc_files():
        if f.startswith("notebooks/"):
            refs = _Refs()
            refs.feed((built_book / f"{f}.html").read_text(encoding="utf-8"))
            figures = [src for src in refs.images if "_static/" not in src]  # not the theme's icons
            assert len(figures) >= 2, f"{f} shows {len(figures)} figures"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def _run_chromium(args: list[str], url: str) -> str:
    exe = _chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is required in CI (.ci/run installs it)")
        pytest.skip("Chromium not installed (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={profile}", "--virtual-time-budget=15000", *args, url]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return proc.stdout


def test_math_is_typeset_offline(built_book):
    dom = _run_chromium(["--dump-dom"], (built_book / "notebooks/02_concepts/01_deep_learning_in_brief.html").as_uri())
    assert "mjx-container" in dom, "MathJax did not typeset the page"
    assert "MathJax" in dom


def test_search_finds_pages(built_book):
    dom = _run_chromium(["--dump-dom"], (built_book / "search.html").as_uri() + "?q=tokenizer")
    hits = re.findall(r'<li[^>]*>\s*<a href="([^"]+\.html)', dom)
    assert hits, "the search page returned no result for 'tokenizer'"


def test_screenshots(built_book):
    shots = OUT / "screenshots"
    shots.mkdir(exist_ok=True)
    for name, page in [("intro", "book/intro"), ("concepts", "notebooks/02_concepts/03_generative_model_families")]:
        png = shots / f"{name}.png"
        _run_chromium([f"--screenshot={png}", "--window-size=1280,1600"], (built_book / f"{page}.html").as_uri())
        assert png.is_file() and png.stat().st_size > 20_000, f"{png} is missing or blank"
