"""Training recipes for the shipped weights: ``python -m aigc_course.train <name>``.

Each recipe module defines ``train(out_dir, fast, seed) -> card``: it builds the data and the
model, trains with :func:`aigc_course.train.fit`, measures its metrics on held-out data and
writes ``<name>.safetensors`` + ``<name>.json`` with :func:`aigc_course.pretrained.save_pretrained`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

RECIPES = {
    "mnist_cnn": "aigc_course.recipes.mnist_cnn",
}


def run(name: str, out_dir=None, fast: bool = False, seed: int = 0) -> dict:
    if name not in RECIPES:
        raise SystemExit(f"Unknown recipe {name!r}. Known recipes: {', '.join(sorted(RECIPES))}.")
    return importlib.import_module(RECIPES[name]).train(out_dir=out_dir, fast=fast, seed=seed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aigc_course.train", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(RECIPES), help="which weights to (re)train")
    parser.add_argument("--out", default=None, help="output folder (default: ~/.cache/aigc_course/weights)")
    parser.add_argument("--fast", action="store_true", help="a few steps only, to check the recipe runs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    card = run(args.name, args.out, args.fast, args.seed)
    print(f"{args.name}: {card['metrics']}  ({card['train_seconds']:.0f} s on {card['device']})")


if __name__ == "__main__":
    main(sys.argv[1:])
