"""Shipped weights: cards, loading without pickle, accuracy, retraining, errors."""

import json
import shutil

import pytest
from data_marks import needs_data

from aigc_course.checkpoint import CheckpointError
from aigc_course.data import image_tensors
from aigc_course.pretrained import SHIPPED_DIR, list_pretrained, load_card, load_pretrained
from aigc_course.train import accuracy


def test_every_shipped_weight_has_a_complete_card():
    names = list_pretrained()
    assert "mnist_cnn" in names
    for name in names:
        card = load_card(name)
        for key in ("arch", "config", "train_command", "data", "metrics", "train_seconds", "device"):
            assert key in card, (name, key)
        assert card["train_command"] == f"python -m aigc_course.train {name}"


def test_shipped_weights_stay_small():
    total = sum(p.stat().st_size for p in SHIPPED_DIR.glob("*.safetensors"))
    assert total < 40 * 1024 * 1024


@needs_data
def test_mnist_cnn_reaches_its_card_accuracy():
    model, card = load_pretrained("mnist_cnn")
    x, y = image_tensors("mnist", "test", limit=2000)
    assert accuracy(model, x, y) > 0.98
    assert card["metrics"]["test_accuracy"] > 0.98


def test_unknown_and_corrupt_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path))
    with pytest.raises(CheckpointError, match="mnist_cnn"):  # lists the known names
        load_pretrained("no_such_model")
    user = tmp_path / "weights"
    user.mkdir()
    shutil.copy(SHIPPED_DIR / "mnist_cnn.json", user / "mnist_cnn.json")
    (user / "mnist_cnn.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_pretrained("mnist_cnn")
    card = json.loads((user / "mnist_cnn.json").read_text())
    card["config"]["feature_dim"] = 32
    (user / "mnist_cnn.json").write_text(json.dumps(card))
    shutil.copy(SHIPPED_DIR / "mnist_cnn.safetensors", user / "mnist_cnn.safetensors")
    with pytest.raises(CheckpointError, match="does not fit"):
        load_pretrained("mnist_cnn")


@needs_data
def test_retrain_command_writes_a_loadable_card(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path))
    from aigc_course.cli import main

    main(["mnist_cnn", "--fast"])
    card = json.loads((tmp_path / "weights" / "mnist_cnn.json").read_text())
    assert card["train_command"].endswith("--fast")
    model, loaded = load_pretrained("mnist_cnn")  # the retrained copy wins over the shipped one
    assert loaded["train_command"].endswith("--fast")
    assert not list((tmp_path / "weights").glob("*.tmp"))
    with pytest.raises(SystemExit):
        main(["not_a_recipe"])


def test_text_model_saves_its_tokenizer(tmp_path, monkeypatch):
    import torch

    from aigc_course.models import GPT, GPTConfig
    from aigc_course.pretrained import load_tokenizer, save_pretrained
    from aigc_course.text.tokenizers import CharTokenizer

    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path))
    tok = CharTokenizer.from_text("to be or not to be")
    model = GPT(GPTConfig.tiny(vocab_size=tok.vocab_size, block_size=8))
    card = {"arch": "gpt", "config": model.config_dict(), "train_command": "python -m aigc_course.train demo",
            "metrics": {}}
    save_pretrained(model, "demo_gpt", card, tokenizer=tok)
    loaded, _ = load_pretrained("demo_gpt")
    assert load_tokenizer("demo_gpt").chars == tok.chars
    idx = torch.tensor([tok.encode("to be")])
    torch.testing.assert_close(loaded(idx), model.eval()(idx))
    with pytest.raises(CheckpointError, match="without a tokenizer"):
        load_tokenizer("mnist_cnn")
    assert "demo_gpt" in list_pretrained() and "demo_gpt.tokenizer" not in list_pretrained()


def test_setup_page_lists_every_shipped_weight():
    """book/setup.md's table (scripts/weights_table.py) names every shipped model."""
    from pathlib import Path

    setup = (Path(__file__).parents[1] / "book" / "setup.md").read_text(encoding="utf-8")
    for name in list_pretrained():
        if (SHIPPED_DIR / f"{name}.json").is_file():
            assert f"`{name}`" in setup, f"add {name} to book/setup.md (python scripts/weights_table.py)"
