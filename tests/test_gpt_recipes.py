"""The character-GPT recipes (5.2, 5.3), the Tang-poem helpers and tied-weight storage."""

import json

import pytest
import torch
from data_marks import needs_data
from safetensors import safe_open

from aigc_course.data.text import Poem
from aigc_course.models import GPT, GPTConfig
from aigc_course.pretrained import load_pretrained, load_tokenizer, save_pretrained
from aigc_course.recipes import run
from aigc_course.text.poems import (
    UNK,
    acrostic,
    build_tokenizer,
    corpus,
    form_score,
    is_regular_line,
    split_poems,
    write_poems,
)


def test_tied_weights_are_stored_once_and_reattached(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = GPT(GPTConfig.tiny(vocab_size=11, block_size=8))
    card = {"arch": "gpt", "config": model.config_dict(), "train_command": "x", "metrics": {}}
    path = save_pretrained(model, "tiny", card, tmp_path / "cache" / "weights")
    with safe_open(str(path), "pt") as f:
        keys = set(f.keys())
        tied = json.loads(f.metadata()["tied"])
    assert "lm_head.weight" not in keys and tied == {"lm_head.weight": "tok_emb.weight"}
    loaded, _ = load_pretrained("tiny")
    assert loaded.lm_head.weight is loaded.tok_emb.weight
    x = torch.randint(0, 11, (2, 8))
    torch.testing.assert_close(loaded(x), model.eval()(x))


def test_configure_optimizer_decays_matrices_only():
    model = GPT(GPTConfig.tiny(vocab_size=11, block_size=8))
    opt = model.configure_optimizer(1e-3, weight_decay=0.1)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters())  # tied weight counted once


def test_regular_lines_and_form_score():
    assert is_regular_line("白日依山盡，黃河入海流。")
    assert is_regular_line("朝辭白帝彩雲間，千里江陵一日還。")
    assert not is_regular_line("白日依山盡黃河入海流。。")
    assert not is_regular_line("白日依山，黃河入海流。")
    text = "白日依山盡，黃河入海流。\n欲窮千里目，更上一層樓。\n\n白日依山，黃河。\n\n"
    s = form_score(text)
    assert s["poems"] == 2 and s["lines"] == 3
    assert s["regular_lines"] == pytest.approx(2 / 3) and s["regular_poems"] == 0.5


def _poems(n=40):
    return [Poem(f"t{i}", "a", ("白日依山盡，黃河入海流。", "欲窮千里目，更上一層樓。")) for i in range(n)]


def test_split_tokenizer_and_bad_input():
    train, val = split_poems(_poems(), 0.1, seed=0)
    assert len(train) == 36 and len(val) == 4
    assert split_poems(_poems(), 0.1, seed=0) == (train, val)
    tok = build_tokenizer(corpus(train) + "龘", min_count=3)
    assert UNK in tok.chars and "龘" not in tok.chars
    assert tok.decode(tok.encode("龘")) == UNK
    with pytest.raises(ValueError, match="val_fraction"):
        split_poems(_poems(), 1.5)


def test_acrostic_lines_start_with_the_heads():
    text = corpus(_poems(5))
    tok = build_tokenizer(text, min_count=1)
    torch.manual_seed(0)
    model = GPT(GPTConfig.tiny(tok.vocab_size, block_size=32))
    poem = acrostic(model, tok, "白欲", max_line=6, seed=1)
    lines = poem.split("\n")
    assert [line[0] for line in lines] == ["白", "欲"]
    assert acrostic(model, tok, "白欲", max_line=6, seed=1) == poem  # seeded
    assert len(write_poems(model, tok, 2, max_chars=10)) == 2
    with pytest.raises(ValueError, match="vocabulary"):
        acrostic(model, tok, "龘")


@needs_data
@pytest.mark.parametrize("name", ["gpt_shakespeare", "gpt_tang"])
def test_recipe_runs_and_reloads(name, tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path))
    card = run(name, fast=True)
    assert card["train_command"] == f"python -m aigc_course.train {name} --fast"
    model, card2 = load_pretrained(name)
    tok = load_tokenizer(name)
    assert card2["metrics"] == card["metrics"] and model.config.vocab_size == tok.vocab_size
    out = model.generate(tok.encode_tensor("\n")[None], 5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 6)
