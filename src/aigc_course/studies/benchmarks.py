"""Results of the repository's benchmarks, shipped with the package (chapters 5.2 and 5.9).

The benchmarks take from ten minutes to several hours on a CPU, so no notebook runs them:

* ``bench/gpt_cpu.py`` (chapter 5.2): wall time of the course's CPU recipe for the Shakespeare
  GPT against nanoGPT's published CPU recipe;
* ``bench/ddim_vs_ddpm.py`` (chapter 5.9): FID, KID and cost of DDPM-1000 against DDIM with
  10 to 1000 steps.

Run from a checkout of the repository, each writes its JSON to ``studies/results/<name>.json``
in the source tree (``--out`` writes elsewhere). That folder is package data, like the weights
in ``weights/``, so the results travel with every install: a checkout, an editable install, a
wheel or ``pip install git+...`` on Colab. :func:`load_benchmark` reads them through
``importlib.resources`` and never through a path relative to the repository or the working
directory.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importlib.resources.abc exists from Python 3.11 on
    from importlib.resources.abc import Traversable

# name -> the command that produces the results, run from the repository root
BENCHMARKS = {
    "gpt_cpu": "python bench/gpt_cpu.py",
    "ddim_vs_ddpm": "OMP_NUM_THREADS=1 python bench/ddim_vs_ddpm.py",
}
RESULTS = "results"  # the package-data folder next to this module


def _check(name: str) -> None:
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")


def results_file(name: str) -> Traversable:
    """The shipped results file of benchmark ``name`` (it may not exist)."""
    _check(name)
    return resources.files(__package__) / RESULTS / f"{name}.json"


def shipped_benchmarks() -> list[str]:
    """Names of the benchmarks whose results ship with this copy of the package."""
    return [name for name in BENCHMARKS if results_file(name).is_file()]


def missing_message(name: str) -> str:
    """What to do when the results of ``name`` are absent."""
    _check(name)
    return (f"No results of the benchmark {name!r} ship with this copy of aigc_course. "
            f"To produce them, run `{BENCHMARKS[name]}` in a checkout of the repository: it writes "
            f"src/aigc_course/{__package__.split('.')[-1]}/{RESULTS}/{name}.json, which the package "
            f"then ships (reinstall it if it is not an editable install). A results file kept "
            f"elsewhere (`--out FILE`) is read with load_benchmark({name!r}, path=FILE).")


def load_benchmark(name: str, path: str | Path | None = None, quiet: bool = False) -> dict | None:
    """The results of benchmark ``name`` as a dict: the shipped file, or ``path`` when given.

    Returns None when the file does not exist, after printing how to produce it (unless
    ``quiet``), so that a notebook can skip its table and figure and still run to the end."""
    _check(name)
    source = Path(path) if path is not None else results_file(name)
    if not source.is_file():
        if not quiet:
            print(missing_message(name) if path is None else
                  f"{path}: no such file. Run `{BENCHMARKS[name]} --out {path}` in a checkout of the repository.")
        return None
    return json.loads(source.read_text(encoding="utf-8"))
