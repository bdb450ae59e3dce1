"""The course as a reader installs it: every notebook runs against a non-editable install.

Colab's setup cell installs the package with ``pip install git+...``: a wheel in site-packages,
far from the repository. Whatever a notebook reads through a path into the source tree (the
repository root, ``bench/``, the working directory) is then missing. This module

1. builds a wheel of the working tree (offline, with the installed setuptools) and checks that
   it holds every file of ``src/aigc_course``, and that the benchmark results load from it;
2. installs the wheel into a fresh virtual environment in a temporary folder. The heavy
   dependencies are not downloaded again: a ``.pth`` line adds the site-packages of the running
   environment behind the fresh one. A path line in a ``.pth`` file does not process the ``.pth``
   files of the folder it adds, so the editable install of the running environment (itself a
   ``.pth`` file pointing at ``src/``) stays out, which the test checks;
3. copies ``notebooks/`` (with its ``conftest.py`` and ``checked_outputs.json``) out of the
   repository, adds a notebook that checks, inside a kernel, where ``aigc_course`` comes from,
   and runs them all through nbval in fast mode with the fresh environment's Python, from a
   working directory outside the repository.

The wheel build is skipped (with its error) when the installed setuptools cannot build it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "src" / "aigc_course"
# The files next to src/ that a build of the package reads.
BUILD_FILES = ("pyproject.toml", "README.md", "setup.py", "setup.cfg", "MANIFEST.in", "LICENSE")
SKIP = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache"}
BENCHMARKS = ["gpt_cpu", "ddim_vs_ddpm"]


def _ignore(_dir, names):
    return [n for n in names if n in SKIP or n.endswith((".egg-info", ".pyc"))]


def _clean_env(**extra) -> dict:
    """The environment of the processes of the installed package: no PYTHONPATH, fast mode."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "MPLBACKEND") and not k.startswith(("PYTEST_", "COV_CORE_"))}
    env.update(AIGC_FAST="1", AIGC_QUIET="1", OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel of the working tree, built from a copy so that the build leaves nothing in it."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "project"
    src.mkdir()
    for name in BUILD_FILES:
        if (REPO / name).is_file():
            shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "src", src / "src", ignore=_ignore)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "-q", "-w", str(tmp / "dist"), str(src)],
        capture_output=True, text=True, timeout=600,
    )
    wheels = sorted((tmp / "dist").glob("aigc_course-*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        pytest.skip(f"cannot build a wheel of the package offline with the installed setuptools "
                    f"(pip wheel exited {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    return wheels[0]


def test_the_wheel_holds_every_file_of_the_package(wheel):
    """Code, weights, cards, tokenizers and benchmark results: whatever src/aigc_course holds."""
    in_src = {p.relative_to(PKG.parent).as_posix() for p in PKG.rglob("*")
              if p.is_file() and not set(p.parts) & SKIP and p.suffix != ".pyc"}
    with zipfile.ZipFile(wheel) as z:
        in_wheel = {n for n in z.namelist() if n.startswith("aigc_course/")}
    assert in_src - in_wheel == set(), f"left out of the wheel: {sorted(in_src - in_wheel)}"
    for name in BENCHMARKS:
        assert f"aigc_course/studies/results/{name}.json" in in_wheel


def test_the_benchmark_results_load_from_the_wheel(wheel, tmp_path):
    """``load_benchmark`` reads through importlib.resources, so it works even from the zipped
    wheel on sys.path (where no file path exists at all)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import json, aigc_course\n"
        "from aigc_course.studies import benchmarks as b\n"
        "print(json.dumps({'file': aigc_course.__file__, 'shipped': b.shipped_benchmarks(),\n"
        "                  'ratio': b.load_benchmark('gpt_cpu')['ratio'],\n"
        "                  'ddpm': b.load_benchmark('ddim_vs_ddpm')['results']['ddpm1000']['fid']}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(wheel)], cwd=tmp_path, env=_clean_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["file"].startswith(str(wheel)), out["file"]
    assert out["shipped"] == BENCHMARKS
    assert out["ratio"] > 0 and out["ddpm"] > 0


@pytest.fixture(scope="module")
def fresh_python(wheel, tmp_path_factory) -> Path:
    """The Python of a fresh virtual environment with the wheel installed (no editable install)."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    install = ["install", "--no-deps", "--no-index", "--disable-pip-version-check", "-q", str(wheel)]
    # Install before the dependencies are visible, so that pip sees no other aigc-course.
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), *install],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:  # a pip without --python: give the environment its own pip
        subprocess.run([str(python), "-m", "ensurepip", "-q"], check=True, timeout=600)
        proc = subprocess.run([str(python), "-m", "pip", *install], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "_aigc_course_dependencies.pth").write_text("".join(f"{p}\n" for p in ours))
    return python


def test_the_fresh_environment_imports_the_installed_package(fresh_python, tmp_path):
    code = ("import json, sys, aigc_course, torch, nbval\n"
            "from aigc_course.studies.benchmarks import shipped_benchmarks\n"
            "print(json.dumps({'file': aigc_course.__file__, 'prefix': sys.prefix, 'path': sys.path,\n"
            "                  'shipped': shipped_benchmarks()}))\n")
    proc = subprocess.run([str(fresh_python), "-c", code], cwd=tmp_path, env=_clean_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    venv = fresh_python.parent.parent
    assert Path(out["file"]).is_relative_to(venv), out["file"]
    assert Path(out["prefix"]) == venv
    on_path = [p for p in out["path"] if p and Path(p).resolve().is_relative_to(REPO.resolve())
               and "site-packages" not in p]
    assert on_path == [], f"the source tree is on sys.path: {on_path}"
    assert out["shipped"] == BENCHMARKS


def _check_notebook(venv: Path) -> dict:
    """A notebook whose one cell fails unless its kernel imports the installed package."""
    import nbformat

    code = f"""import sys
from pathlib import Path

import aigc_course
from aigc_course.studies.benchmarks import shipped_benchmarks

venv, repo = Path({str(venv.resolve())!r}), Path({str(REPO.resolve())!r})
assert Path(aigc_course.__file__).resolve().is_relative_to(venv), aigc_course.__file__
assert Path(sys.prefix).resolve() == venv, sys.prefix
src = [p for p in sys.path if p and Path(p).resolve().is_relative_to(repo) and "site-packages" not in p]
assert not src, src
assert shipped_benchmarks() == {BENCHMARKS!r}, shipped_benchmarks()
print("installed package:", aigc_course.__file__)"""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@pytest.mark.slow
def test_every_notebook_runs_against_the_installed_package(fresh_python, tmp_path):
    import nbformat

    work = tmp_path / "course"
    shutil.copytree(REPO / "notebooks", work / "notebooks", ignore=_ignore)
    venv = fresh_python.parent.parent
    nbformat.write(_check_notebook(venv), work / "notebooks" / "00_installed_package.ipynb")
    (work / "pytest.ini").write_text("[pytest]\naddopts = -ra\n"
                                     "filterwarnings =\n    ignore::DeprecationWarning:jupyter_client.*\n")
    expected = sorted(p.relative_to(work).as_posix() for p in (work / "notebooks").rglob("*.ipynb"))
    # Inside the two-process `make test`, one process: the other keeps running the rest.
    inner = [] if os.environ.get("PYTEST_XDIST_WORKER") or (os.cpu_count() or 1) < 2 else ["-n", "2", "--dist", "loadfile"]
    report = work / "junit.xml"
    start = time.perf_counter()
    proc = subprocess.run(
        [str(fresh_python), "-m", "pytest", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
         "-q", "--durations=10", "-o", "junit_family=xunit1", f"--junitxml={report}", *inner, "notebooks"],
        cwd=work, env=_clean_env(), capture_output=True, text=True, timeout=3600,
    )
    seconds = time.perf_counter() - start
    log = proc.stdout + proc.stderr
    (tmp_path / "pytest.log").write_text(log)
    assert report.is_file(), f"the notebooks did not run ({seconds:.0f} s):\n{log[-6000:]}"
    failed, ran = set(), {}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("file") or case.get("classname", "").removesuffix(".ipynb").replace(".", "/") + ".ipynb"
        ran[name] = ran.get(name, 0.0) + float(case.get("time") or 0)
        if case.find("failure") is not None or case.find("error") is not None:
            failed.add(name)
    times = ", ".join(f"{Path(n).stem} {t:.0f} s" for n, t in sorted(ran.items(), key=lambda kv: -kv[1])[:8])
    assert proc.returncode == 0 and not failed, (
        f"notebooks that fail against the installed package: {sorted(failed)} ({seconds:.0f} s in all; "
        f"slowest: {times})\n{log[-8000:]}")
    missing = sorted(set(expected) - set(ran))
    assert not missing, f"notebooks that did not run: {missing}"
