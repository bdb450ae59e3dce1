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
    "char_gru_shakespeare": "aigc_course.recipes.char_gru_shakespeare",
    "gpt_shakespeare": "aigc_course.recipes.gpt_shakespeare",
    "gpt_tang": "aigc_course.recipes.gpt_tang",
    "seq2seq_en_zh": "aigc_course.recipes.seq2seq_en_zh",
    "ddpm_mnist": "aigc_course.recipes.ddpm_mnist",
    "captioner_mnist": "aigc_course.recipes.captioner_mnist",
    "dcgan_mnist": "aigc_course.recipes.dcgan_mnist",
    "mini_clip_mnist": "aigc_course.recipes.mini_clip_mnist",
    "txt2img_mnist": "aigc_course.recipes.txt2img_mnist",
    "latent_diffusion_mnist": "aigc_course.recipes.latent_diffusion_mnist",
    "conv_vae_mnist": "aigc_course.recipes.conv_vae_mnist",
}


def run(name: str, out_dir=None, fast: bool = False, seed: int = 0, recipe: str | None = None) -> dict:
    """Train the weights ``name``. ``recipe`` picks a size where a module has several
    (``"cpu"``: minutes on a laptop, the shipped weights; ``"gpu"``: the full recipe)."""
    if name not in RECIPES:
        raise SystemExit(f"Unknown recipe {name!r}. Known recipes: {', '.join(sorted(RECIPES))}.")
    module = importlib.import_module(RECIPES[name])
    kwargs = {} if recipe is None else {"recipe": recipe}
    return module.train(out_dir=out_dir, fast=fast, seed=seed, **kwargs)


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
