"""The command line that retrains the shipped weights: ``python -m aigc_course.train NAME``.

Taught in book/setup.md (section "Shipped weights"). Each name is a recipe of
:mod:`aigc_course.recipes`; the command writes ``NAME.safetensors`` and its card ``NAME.json``.
It lives apart from the training loop so that the loop never imports the recipes.
"""

from __future__ import annotations

import argparse
import sys

from aigc_course.recipes import RECIPES, run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aigc_course.train", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(RECIPES), help="which weights to (re)train")
    parser.add_argument("--out", default=None, help="output folder (default: ~/.cache/aigc_course/weights)")
    parser.add_argument("--fast", action="store_true", help="a few steps only, to check the recipe runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipe", default=None, choices=["cpu", "gpu"],
                        help="the CPU recipe (minutes, the shipped weights) or the full GPU recipe, "
                             "where the model has both")
    args = parser.parse_args(argv)
    card = run(args.name, args.out, args.fast, args.seed, args.recipe)
    print(f"{args.name}: {card['metrics']}  ({card['train_seconds']:.0f} s on {card['device']})")



if __name__ == "__main__":
    main(sys.argv[1:])
