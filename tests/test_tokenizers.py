import pytest
import torch

from aigc_course.text.tokenizers import CharTokenizer


def test_round_trip_and_stable_vocabulary(tmp_path):
    text = "To be, or not to be: that is the question."
    tok = CharTokenizer.from_text(text)
    assert tok.chars == sorted(set(text))  # sorted: the same text always gives the same ids
    assert tok.decode(tok.encode(text)) == text
    assert tok.encode_tensor("to").dtype == torch.long
    tok.save(tmp_path / "vocab.json")
    again = CharTokenizer.load(tmp_path / "vocab.json")
    assert again.chars == tok.chars and again.encode(text) == tok.encode(text)


def test_unicode_text():
    tok = CharTokenizer.from_text("床前明月光，疑是地上霜。")
    assert tok.vocab_size == 12 and tok.decode(tok.encode("明月")) == "明月"


def test_unknown_characters():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.encode("abz")
    tok = CharTokenizer.from_text("abc", unk="?")
    assert tok.decode(tok.encode("abz")) == "ab?"
    with pytest.raises(ValueError, match="out of range"):
        tok.decode([99])


def test_bad_saved_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not a saved CharTokenizer"):
        CharTokenizer.load(p)
    with pytest.raises(ValueError, match="repeated"):
        CharTokenizer(["a", "a"])
