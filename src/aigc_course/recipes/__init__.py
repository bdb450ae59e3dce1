"""Training recipes for the shipped weights: ``python -m aigc_course.train <name>`` (see ``cli.py``).

Each recipe module defines ``train(out_dir, fast, seed) -> card``: it builds the data and the
model, trains with :func:`aigc_course.train.fit`, measures its metrics on held-out data and
writes ``<name>.safetensors`` + ``<name>.json`` with :func:`aigc_course.pretrained.save_pretrained`.
The chapters that load the weights (3.1-3.8 and 5.1-5.13) name their recipe; book/setup.md lists
them all with their metrics.
"""

from __future__ import annotations

import importlib

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
    "fashion_diffusion": "aigc_course.recipes.fashion_diffusion",
    "fashion_cnn": "aigc_course.recipes.fashion_cnn",
    "copy_gpt": "aigc_course.recipes.copy_gpt",
    "gpt_levels": "aigc_course.recipes.gpt_levels",
    "gpt_abc": "aigc_course.recipes.gpt_abc",
    "masked_lm_tatoeba": "aigc_course.recipes.masked_lm_tatoeba",
    "assistant_gpt": "aigc_course.recipes.assistant_gpt",
    "assistant_base": "aigc_course.recipes.assistant_base",
    "assistant_sft": "aigc_course.recipes.assistant_sft",
    "assistant_tuned": "aigc_course.recipes.assistant_tuned",
}


def run(name: str, out_dir=None, fast: bool = False, seed: int = 0, recipe: str | None = None) -> dict:
    """Train the weights ``name``. ``recipe`` picks a size where a module has several
    (``"cpu"``: minutes on a laptop, the shipped weights; ``"gpu"``: the full recipe)."""
    if name not in RECIPES:
        raise SystemExit(f"Unknown recipe {name!r}. Known recipes: {', '.join(sorted(RECIPES))}.")
    module = importlib.import_module(RECIPES[name])
    kwargs = {} if recipe is None else {"recipe": recipe}
    return module.train(out_dir=out_dir, fast=fast, seed=seed, **kwargs)
