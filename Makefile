# AIGC from Beginner to Practice: the two commands of the README.
#   make book   set up the environment (.venv) and build the book in full mode
#   make test   set up the environment and run every test (package, notebooks, book build, rendering)
# Other targets: setup, book-fast, lab, lint, strip, clean.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Use the local data mirror next to the repository when there is one (CI and the course machines).
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)),)
export AIGC_DATA_DIR ?= $(SHARED_DATA)
endif
# Keep compiled kernels and caches inside the tree, out of the user's home.
export TORCHINDUCTOR_CACHE_DIR ?= $(abspath _build/.inductor)

.PHONY: setup book book-fast test lab lint strip clean

$(VENV)/.installed: pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -c requirements/constraints.txt torch
	$(BIN)/python -m pip install -c requirements/constraints.txt -e ".[dev,book]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (aigc-course)"
	touch $@

setup: $(VENV)/.installed

# The book: scripts/build_book.py runs `jupyter-book build` with the execution cache
# (jupyter-cache) in _build/<mode>/.jupyter_cache/<mode>-<key>, the key a hash of the mode,
# src/aigc_course (code, weights, benchmark results) and the installed packages: a rebuild with
# nothing changed executes no notebook, an edited notebook runs again alone, a package change
# re-runs them all, and the fast and full modes never share outputs. The script sets
# AIGC_BOOK=1 AIGC_QUIET=1, and AIGC_FAST=1 in fast mode only. `make clean` empties the caches.
BOOK_OPTS := -W -n --keep-going

book: setup
	$(BIN)/python scripts/build_book.py full --path-output _build/full $(BOOK_OPTS)
	@echo "Book built (full mode): file://$(abspath _build/full/_build/html/index.html)"
	@# record what the chapters printed and list prose numbers that drifted from it (commit
	@# book/measured_numbers.json with the prose; tests/test_numbers.py checks the two agree)
	-$(BIN)/python scripts/check_numbers.py --record _build/full/_build/jupyter_execute

book-fast: setup
	$(BIN)/python scripts/build_book.py fast --path-output _build/fast $(BOOK_OPTS)
	@echo "Book built (fast mode): file://$(abspath _build/fast/_build/html/index.html)"

# Unit tests and the notebooks, spread over two processes (one test file per process at a time),
# one thread each so that the two never oversubscribe the cores. Every notebook runs twice, in
# fast mode: through nbval against the installed wheel (tests/test_installed_package.py, which
# also compares the `# NBVAL_CHECK_OUTPUT` cells with notebooks/checked_outputs.json) and from
# the source tree in the book build with warnings as errors (tests/test_book.py). One notebook
# through nbval from the source tree: see CONTRIBUTING.md, "Checking a notebook".
test: setup
	AIGC_FAST=1 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile tests

lab: setup
	$(BIN)/jupyter lab notebooks

lint: setup
	$(BIN)/ruff check src tests notebooks scripts bench

strip: setup
	$(BIN)/python scripts/strip_outputs.py notebooks

clean:
	rm -rf _build
