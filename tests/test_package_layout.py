"""The package's map: its import graph has no cycle and its arrows point one way, the tree reads
like the course, and no algorithm is written twice.

The graph is built from the source with ``ast`` (every import statement, also those inside
functions), so it needs no import of the package and sees lazy imports too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "aigc_course"

CORE = {"__init__", "runtime", "checkpoint", "pretrained", "plotting", "widgets", "cli"}
TOPIC_FOLDERS = {"data", "models", "train", "diffusion", "recipes", "text", "metrics", "concepts", "maths", "studies",
                 "apps", "assistant"}
MAX_LINES = 350
MAX_MODULES = 12  # per folder, __init__ included, except the two registries below
# models/ holds one family per file (plus the two parts families share); recipes/ one module
# per shipped weight file (plus the three parts recipes share): their size follows the course.
SHARED_MODELS = {"__init__", "embeddings", "gaussian", "mlp", "baselines", "toy2d"}
SHARED_RECIPES = {"__init__", "cards", "char_gpt", "diffusion_training"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PKG.rglob("*.py")}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules that ``path`` imports (``from pkg import submodule`` counts as the submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "aigc_course"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "aigc_course":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in modules else target)
    return {m for m in out if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(u):
        state[u] = "open"
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == "open":
                return stack[stack.index(v):] + [v]
            if v not in state and (cycle := visit(v)):
                return cycle
        state[u] = "done"
        stack.pop()
        return None

    for u in sorted(graph):
        if u not in state and (cycle := visit(u)):
            return cycle
    return None


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for v in graph.get(todo.pop(), ()):
            if v not in seen:
                seen.add(v)
                todo.append(v)
    return seen


def in_folder(module: str, folder: str) -> bool:
    return module == f"aigc_course.{folder}" or module.startswith(f"aigc_course.{folder}.")


def test_the_graph_sees_every_kind_of_import():
    """The checks below rest on this parser: relative, absolute, lazy and submodule imports."""
    graph = import_graph()
    assert "aigc_course.runtime" in graph["aigc_course"]  # from aigc_course.runtime import ...
    assert "aigc_course.models" in graph["aigc_course.pretrained"]  # lazy, inside a function
    assert "aigc_course.data.download" in graph["aigc_course.data.images"]  # relative
    assert "aigc_course.diffusion.samplers" in graph["aigc_course.diffusion"]  # package re-export
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_models_never_import_the_trainer():
    graph = import_graph()
    for module in graph:
        if in_folder(module, "models"):
            bad = {t for t in reachable(graph, module) if in_folder(t, "train") or in_folder(t, "recipes")}
            assert not bad, f"{module} reaches the training side: {sorted(bad)}"


def test_the_training_loop_never_imports_recipes():
    """``python -m aigc_course.train`` runs ``train/__main__.py``, which hands over to ``cli``:
    the entry point is the one module of ``train/`` allowed to reach the recipes."""
    graph = import_graph()
    for module in graph:
        if in_folder(module, "train") and not module.endswith("__main__"):
            bad = {t for t in reachable(graph, module) if in_folder(t, "recipes") or t == "aigc_course.cli"}
            assert not bad, f"{module} reaches the recipes: {sorted(bad)}"
    assert "aigc_course.cli" in graph["aigc_course.train.__main__"]


def test_top_level_holds_only_the_core_and_topic_folders():
    files = {p.stem for p in PKG.glob("*.py")}
    folders = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert files == CORE
    assert folders == TOPIC_FOLDERS


def test_every_folder_is_small_and_says_which_chapters_use_it():
    from aigc_course.models import ARCHS
    from aigc_course.recipes import RECIPES

    for folder in sorted(TOPIC_FOLDERS):
        stems = {p.stem for p in (PKG / folder).glob("*.py")}
        doc = ast.get_docstring(ast.parse((PKG / folder / "__init__.py").read_text(encoding="utf-8"))) or ""
        assert re.search(r"\b[1-6]\.\d+\b|[Cc]hapter|part [1-6]", doc), f"{folder}/__init__ names no chapter"
        if folder == "models":
            families = {spec.split(":")[0].rsplit(".", 1)[1] for spec in ARCHS.values()}
            assert stems - SHARED_MODELS <= families, f"models/ holds a module that is no family: {stems - SHARED_MODELS - families}"
        elif folder == "recipes":
            assert stems - SHARED_RECIPES == set(RECIPES), "recipes/ holds one module per shipped weight file"
        else:
            assert len(stems) <= MAX_MODULES, f"{folder}/ has {len(stems)} modules: split it by topic"


def test_no_module_is_long():
    long = {module_name(p): n for p in PKG.rglob("*.py") if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


# One copy of each algorithm: the pattern that gives a second copy away -> the one file allowed to have it.
ONE_HOME = {
    "a DDPM or DDIM sampling loop": (r"for .+ in (range\(schedule\.num_steps - 1|reversed\(range|enumerate\(steps\))",
                                     "diffusion/samplers.py"),
    "the Gaussian KL to N(0, I)": (r"logvar\.exp\(\) - 1", "models/gaussian.py"),
    "the reparameterisation mu + sigma * eps": (r"exp\(0\.5 \* logvar\) \*", "models/gaussian.py"),
    "a sinusoidal timestep embedding": (r"def timestep_embedding|torch\.cat\(\[.*(sin|cos)\(", "models/embeddings.py"),
    "a random mini-batch of rows": (r"randint\(0, (len\([^)]*\)|n), \([\w.\[\]\"]*batch_size", "train/loop.py"),
    "random windows of a token stream": (r"starts\[:, None\] \+", "text/batches.py"),
}


@pytest.mark.parametrize("what", sorted(ONE_HOME))
def test_each_algorithm_is_written_once(what):
    pattern, home = ONE_HOME[what]
    where = sorted(str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
                   if re.search(pattern, p.read_text(encoding="utf-8")))
    assert where == [home], f"{what} is written in {where}; keep it in {home} only"


def test_python_dash_m_train_still_runs_the_command_line():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "aigc_course.train", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "python -m aigc_course.train" in proc.stdout and "mnist_cnn" in proc.stdout
