"""Tests of the byte-level BPE tokenizer (aigc_course.text.bpe), incl. a cross-check with HF tokenizers."""

import pytest
from data_marks import needs_data

from aigc_course.text.bpe import (
    BPETokenizer,
    bytes_to_unicode,
    hf_reference_tokenizer,
    word_tokenize,
)
from aigc_course.text.tokenizers import load_tokenizer_file

TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\nAll:\nResolved. resolved.\n"
    "We'll go, they're here; 12 dogs at 3:45 -- isn't it?  Yes!   \n\t床前明月光，疑是地上霜。 ") * 30


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.train(TEXT, vocab_size=360)


def test_round_trip_any_string(tok):
    for s in [TEXT[:500], "", "  ", "unseen words: Zyzzyva ☃ 😀 naïve", "\x00\x7f\n\r\t", "舉頭望明月"]:
        assert tok.decode(tok.encode(s)) == s


def test_merges_count_and_vocab(tok):
    assert tok.vocab_size == 360
    assert len(tok.merges) >= 360 - 256
    assert len(set(tok.vocab)) == tok.vocab_size
    # each merge's new token is the concatenation of its parts
    for (a, b), v in zip(tok.merges, tok.vocab[256:]):
        assert v == tok.vocab[a] + tok.vocab[b]
    # fewer tokens than bytes on training-like text
    assert len(tok.encode(TEXT[:1000])) < len(TEXT[:1000].encode()) / 2


def test_gpt2_byte_ids():
    tok = BPETokenizer()
    assert tok.encode("!") == [0] and tok.encode(" ") == [220]  # GPT-2's ids
    assert bytes_to_unicode()[ord(" ")] == "Ġ" and len(set(bytes_to_unicode().values())) == 256


def test_min_frequency_stops_early():
    # chunks "ab", " ab", " ab", " cd": the pair (a, b) occurs 3 times, then (" ", ab) twice
    assert BPETokenizer.train("ab ab ab cd", 1000, min_frequency=3).merge_strings() == [("a", "b")]
    tok = BPETokenizer.train("ab ab ab cd", 1000, min_frequency=2)
    assert tok.merge_strings() == [("a", "b"), (" ", "ab")]


def test_tokens_and_merge_strings(tok):
    assert "".join(tok.tokens("hear me speak")) == "hear me speak"
    assert all(isinstance(a, str) for a, _ in tok.merge_strings(5))


def test_matches_huggingface_tokenizers(tok):
    hf = hf_reference_tokenizer([TEXT], vocab_size=360)
    import json

    hf_merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" "))
                 for m in json.loads(hf.to_str())["model"]["merges"]]
    assert tok.hf_merges() == hf_merges
    for s in [TEXT[:2000], "Speak, citizens! 床前明月光 we'll see"]:
        assert tok.encode(s) == hf.encode(s).ids


@needs_data
def test_matches_huggingface_on_shakespeare():
    from aigc_course.data import load_text

    text = load_text("tinyshakespeare")[:100_000]
    ours = BPETokenizer.train(text, vocab_size=600)
    hf = hf_reference_tokenizer([text], vocab_size=600)
    sample = load_text("tinyshakespeare")[-20_000:]  # held-out text
    assert ours.encode(sample) == hf.encode(sample).ids
    assert ours.vocab_size == hf.get_vocab_size()


def test_save_load(tok, tmp_path):
    path = tmp_path / "bpe.json"
    tok.save(path)
    for other in (BPETokenizer.load(path), load_tokenizer_file(path), BPETokenizer.from_dict(tok.to_dict())):
        assert isinstance(other, BPETokenizer)
        assert other.merges == tok.merges and other.encode(TEXT[:300]) == tok.encode(TEXT[:300])


def test_bad_input(tok, tmp_path):
    with pytest.raises(ValueError, match="256"):
        BPETokenizer.train("abc", vocab_size=100)
    with pytest.raises(ValueError, match="empty"):
        BPETokenizer.train([], vocab_size=300)
    with pytest.raises(ValueError, match="0..359"):
        tok.decode([360])
    with pytest.raises(ValueError, match="str"):
        tok.encode(b"bytes")
    with pytest.raises(ValueError, match="training order"):
        BPETokenizer([(300, 1)])
    with pytest.raises(ValueError, match="BPE"):
        BPETokenizer.from_dict({"type": "char"})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError):
        BPETokenizer.load(bad)


def test_word_tokenize():
    assert word_tokenize("Don't stop, 2 go!") == ["Don", "'", "t", "stop", ",", "2", "go", "!"]
