"""Build the book in one mode, re-executing only the notebooks whose outputs may have changed.

Usage: python scripts/build_book.py {fast,full} [--source DIR] [--path-output DIR] [--keep N]
                                    [JUPYTER-BOOK BUILD OPTIONS ...]
       python scripts/build_book.py {fast,full} --print-cache [--source DIR] [--path-output DIR]

``make book`` and ``make book-fast`` call this. It runs ``jupyter-book build`` with
``execute_notebooks: cache`` (jupyter-cache), so a rebuild with nothing changed executes no
notebook and a change to one chapter re-executes only that chapter. jupyter-cache matches a
notebook on its code cells (and kernelspec) alone; it cannot see what else the outputs depend on,
so this script keeps one cache folder per *key*:

    <path-output>/.jupyter_cache/<mode>-<key>

where ``<key>`` is a hash of

* the mode (``fast`` sets ``AIGC_FAST=1``, ``full`` removes it from the environment): the two
  modes never share outputs, even when built into the same ``--path-output``;
* every file of the course package under ``<source>/src/aigc_course``: code, the shipped
  weights in ``weights/`` and the benchmark results that chapters 5.2 and 5.9 plot
  (``studies/results/``); ``DEPENDENCIES`` below;
* ``AIGC_DEVICE``, the Python version and the name and version of every installed distribution.

A change to any of these selects a new, empty cache folder: every notebook runs again (the cache
path is a Sphinx config value, so Sphinx also re-reads every page). Cache folders other than the
current one and the ``--keep - 1`` most recently used ones are deleted.

When the build fails (a notebook raised, or a warning with ``-W``), the script deletes Sphinx's
saved environment: otherwise the next build would not read the failing pages again and would pass.
The notebooks that succeeded stay in the cache, so only the failing ones run again.

There is no command-line switch for the execution mode, so the script writes a copy of
``<source>/_config.yml`` with only ``execute.execute_notebooks`` and ``execute.cache`` changed to
``<path-output>/_config.<mode>.yml`` and passes it with ``--config``. ``_config.yml`` itself keeps
``execute_notebooks: force``, so a hand-run ``jupyter-book build .`` never reuses a cache.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# What the notebooks' outputs depend on besides their own code (paths relative to the source):
# the course package with its shipped weights and the benchmark results that chapters 5.2 and
# 5.9 plot. Add a path here when a notebook starts reading a new file. (Third-party packages
# count through the installed versions, so a pyproject.toml edit alone re-runs nothing.)
DEPENDENCIES = ("src/aigc_course",)
# Environment variables that change the outputs (AIGC_FAST is the mode, part of the key anyway).
ENV_VARS = ("AIGC_DEVICE",)
MODES = ("fast", "full")
_SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".ruff_cache"}
_CACHE_NAME = re.compile(r"^(fast|full)-[0-9a-f]{16}$")


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    out = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        out += [Path(root, f) for f in sorted(files) if not f.endswith((".pyc", ".pyo"))]
    return out


def cache_key(mode: str, source: Path) -> str:
    """16 hex digits that change with the mode, the package, its weights, the benchmark results
    and the environment."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    h = hashlib.sha256()
    h.update(f"mode={mode}\npython={sys.version}\n".encode())
    for var in ENV_VARS:
        h.update(f"env:{var}={os.environ.get(var)!r}\n".encode())
    for dist in sorted(f"{d.metadata.get('Name')}=={d.version}" for d in metadata.distributions()):
        h.update(f"dist={dist}\n".encode())
    for dep in DEPENDENCIES:
        path = source / dep
        if not path.exists():
            h.update(f"missing={dep}\n".encode())
            continue
        for f in _files(path):
            h.update(f"file={f.relative_to(source).as_posix()}\n".encode())
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


def cache_dir(mode: str, source: Path, path_output: Path) -> Path:
    return path_output.resolve() / ".jupyter_cache" / f"{mode}-{cache_key(mode, source)}"


def prune(current: Path, keep: int) -> list[Path]:
    """Delete the cache folders next to ``current`` except it and the ``keep - 1`` newest others."""
    others = [p for p in current.parent.iterdir()
              if p != current and p.is_dir() and _CACHE_NAME.match(p.name)]
    others.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    removed = others[max(keep - 1, 0):]
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    return removed


def write_config(source: Path, path_output: Path, mode: str, cache: Path) -> Path:
    config_path = source / "_config.yml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    config = config or {}
    execute = dict(config.get("execute") or {})
    execute["execute_notebooks"] = "cache"
    execute["cache"] = str(cache)
    config["execute"] = execute
    # Jupyter Book resolves local extension paths against the config file's folder.
    local = (config.get("sphinx") or {}).get("local_extensions") or {}
    for name, path in local.items():
        local[name] = str((source / path).resolve())
    out = path_output / f"_config.{mode}.yml"
    out.write_text(f"# Generated by scripts/build_book.py from {config_path}: do not edit.\n"
                   + yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return out


def build_env(mode: str) -> dict[str, str]:
    env = dict(os.environ, AIGC_BOOK="1", AIGC_QUIET="1")
    if mode == "fast":
        env["AIGC_FAST"] = "1"
    else:
        env.pop("AIGC_FAST", None)
    env.pop("MPLBACKEND", None)  # the kernels must use the inline backend, or figures vanish
    return env


def jupyter_book() -> str:
    exe = Path(sys.executable).parent / "jupyter-book"
    return str(exe) if exe.exists() else (shutil.which("jupyter-book") or "jupyter-book")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--source", type=Path, default=REPO, help="book folder (default: the repository)")
    parser.add_argument("--path-output", type=Path, default=None,
                        help="build folder (default: <source>/_build/<mode>)")
    parser.add_argument("--keep", type=int, default=2,
                        help="cache folders to keep per build folder, the current one included (default 2)")
    parser.add_argument("--print-cache", action="store_true", help="print the cache folder and exit")
    args, jb_args = parser.parse_known_args(argv)
    source = args.source.resolve()
    path_output = (args.path_output or source / "_build" / args.mode).resolve()
    cache = cache_dir(args.mode, source, path_output)
    if args.print_cache:
        print(cache)
        return 0

    cache.mkdir(parents=True, exist_ok=True)
    os.utime(cache)  # most recently used: the last one pruned
    for p in prune(cache, args.keep):
        print(f"build_book: removed old cache {p}")
    config = write_config(source, path_output, args.mode, cache)
    print(f"build_book: {args.mode} mode, jupyter-cache at {cache}", flush=True)
    cmd = [jupyter_book(), "build", str(source), "--path-output", str(path_output),
           "--config", str(config), *jb_args]
    rc = subprocess.run(cmd, env=build_env(args.mode)).returncode
    if rc != 0:
        # Sphinx keeps the pages it has read, warnings and all, and would not read them again:
        # the next build would skip a failing notebook and pass. Forget them (jupyter-cache keeps
        # the notebooks that succeeded, so only the failing ones run again).
        (path_output / "_build" / ".doctrees" / "environment.pickle").unlink(missing_ok=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
