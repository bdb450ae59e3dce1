"""The card parts every recipe shares (``aigc_course.recipes.cards``) and the recipe registry."""

import importlib

import pytest

from aigc_course.recipes import RECIPES
from aigc_course.recipes.cards import choose_recipe, data_card, run_card, train_command


def test_train_command_names_recipe_seed_and_fast_only_when_not_default():
    assert train_command("ddpm_mnist") == "python -m aigc_course.train ddpm_mnist"
    assert train_command("ddpm_mnist", "gpu", seed=3) == "python -m aigc_course.train ddpm_mnist --recipe gpu --seed 3"
    assert train_command("ddpm_mnist", fast=True) == "python -m aigc_course.train ddpm_mnist --fast"


def test_choose_recipe_lists_the_known_recipes():
    assert choose_recipe({"cpu": 1, "gpu": 2}, "gpu") == 2
    with pytest.raises(ValueError, match=r"Unknown recipe 'tpu'.*\['cpu', 'gpu'\]"):
        choose_recipe({"cpu": 1, "gpu": 2}, "tpu")


def test_data_card_records_every_file_hash_and_extra_fields():
    card = data_card("mnist", split="train")
    assert card["dataset"] == "mnist" and card["split"] == "train"
    assert len(card["sha256"]) == 4 and all(len(h) == 64 for h in card["sha256"].values())


def test_run_card_counts_parameters():
    import torch

    card = run_card(torch.nn.Linear(3, 2), 1.234, "cpu")
    assert card["parameters"] == 8 and card["train_seconds"] == 1.2 and card["torch"] == torch.__version__


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_rejects_an_unknown_recipe_name(name):
    module = importlib.import_module(RECIPES[name])
    if "recipe" not in module.train.__code__.co_varnames:
        pytest.skip(f"{name} has a single recipe")
    with pytest.raises(ValueError, match="Unknown recipe 'tpu'"):
        module.train(fast=True, recipe="tpu")
