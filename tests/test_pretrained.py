"""Shipped weights: cards, loading without pickle, accuracy, retraining, errors, file hashes."""

import json
import shutil
import struct
import warnings

import pytest
from data_marks import needs_data

from aigc_course import pretrained
from aigc_course.checkpoint import CheckpointError
from aigc_course.data import image_tensors
from aigc_course.data.download import sha256sum
from aigc_course.pretrained import SHIPPED_DIR, list_pretrained, load_card, load_pretrained
from aigc_course.train import accuracy


def entry_files(folder, name):
    """The files of the entry ``name`` in ``folder`` other than its card (weights, tokenizers)."""
    return sorted(p.name for p in folder.glob(f"{name}.*") if p.name != f"{name}.json")


def copy_entry(name, dest):
    """Copy the shipped ``name`` (weights, card, tokenizers) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for p in SHIPPED_DIR.glob(f"{name}.*"):
        shutil.copy(p, dest / p.name)


def flip_a_tensor_byte(path):
    """Flip one byte in the middle of the tensor data: the header stays intact, so safetensors
    still reads the file, and only a checksum can tell."""
    data = bytearray(path.read_bytes())
    (header_len,) = struct.unpack("<Q", data[:8])
    start = 8 + header_len
    data[start + (len(data) - start) // 2] ^= 0x40
    path.write_bytes(bytes(data))


def test_every_shipped_weight_has_a_complete_card():
    names = list_pretrained()
    assert "mnist_cnn" in names
    for name in names:
        card = load_card(name)
        for key in ("arch", "config", "train_command", "data", "metrics", "train_seconds", "device"):
            assert key in card, (name, key)
        assert card["train_command"] == f"python -m aigc_course.train {name}"


def test_every_shipped_card_records_the_sha256_of_its_files():
    """The card lists every file of its entry (weights and tokenizers) with the file's SHA-256."""
    cards = [p for p in SHIPPED_DIR.glob("*.json") if not p.name.endswith(".tokenizer.json")]
    assert cards
    for card_path in cards:
        name = card_path.stem
        card = json.loads(card_path.read_text(encoding="utf-8"))
        assert "sha256" in card, f"{card_path.name}: no sha256 (python scripts/stamp_weight_hashes.py)"
        assert sorted(card["sha256"]) == entry_files(SHIPPED_DIR, name), name
        assert f"{name}.safetensors" in card["sha256"]
        for file, digest in card["sha256"].items():
            assert sha256sum(SHIPPED_DIR / file) == digest, f"{file} does not match its card"


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


def test_a_flipped_byte_in_retrained_weights_is_caught(tmp_path, monkeypatch):
    """A damaged file in the cache: the error names it and gives the card's retrain command."""
    from safetensors.torch import load_file

    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path))
    user = tmp_path / "weights"
    copy_entry("char_gru_shakespeare", user)
    card = json.loads((user / "char_gru_shakespeare.json").read_text(encoding="utf-8"))
    card["train_command"] += " --seed 7"  # the card's own command, not a generic one
    (user / "char_gru_shakespeare.json").write_text(json.dumps(card), encoding="utf-8")
    weights = user / "char_gru_shakespeare.safetensors"
    flip_a_tensor_byte(weights)
    load_file(str(weights))  # safetensors itself sees nothing wrong
    with pytest.raises(pretrained.WeightsIntegrityError) as err:
        load_pretrained("char_gru_shakespeare")
    assert isinstance(err.value, CheckpointError)
    message = str(err.value)
    assert str(weights) in message and "SHA-256" in message
    assert "`python -m aigc_course.train char_gru_shakespeare --seed 7`" in message
    assert "reinstall" not in message
    # the tokenizer is intact and still loads
    assert pretrained.load_tokenizer("char_gru_shakespeare").vocab_size > 0


def test_a_flipped_byte_in_shipped_weights_says_to_reinstall(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path / "cache"))
    shipped = tmp_path / "site-packages" / "aigc_course" / "weights"
    copy_entry("mnist_cnn", shipped)
    monkeypatch.setattr(pretrained, "SHIPPED_DIR", shipped)
    flip_a_tensor_byte(shipped / "mnist_cnn.safetensors")
    with pytest.raises(pretrained.WeightsIntegrityError) as err:
        load_pretrained("mnist_cnn")
    message = str(err.value)
    assert str(shipped / "mnist_cnn.safetensors") in message
    assert "reinstall" in message and "pip install --force-reinstall" in message


def test_a_changed_tokenizer_is_caught(tmp_path, monkeypatch):
    """A tokenizer that still parses but maps ids differently would decode wrongly: it is hashed too."""
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path))
    user = tmp_path / "weights"
    copy_entry("seq2seq_en_zh", user)
    path = user / "seq2seq_en_zh.tgt.tokenizer.json"
    tok = json.loads(path.read_text(encoding="utf-8"))
    tok["tokens"][10], tok["tokens"][11] = tok["tokens"][11], tok["tokens"][10]  # two ids swapped
    path.write_text(json.dumps(tok, ensure_ascii=False, indent=0), encoding="utf-8")
    pretrained.load_tokenizer("seq2seq_en_zh", "src")  # the other one is intact
    load_pretrained("seq2seq_en_zh")  # and so are the weights
    with pytest.raises(pretrained.WeightsIntegrityError) as err:
        pretrained.load_tokenizer("seq2seq_en_zh", "tgt")
    assert str(path) in str(err.value)
    assert "`python -m aigc_course.train seq2seq_en_zh`" in str(err.value)


def test_a_tokenizer_the_card_does_not_list_is_refused(tmp_path, monkeypatch):
    """A tokenizer left over from an earlier save is not trusted with weights it was not saved with."""
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path))
    user = tmp_path / "weights"
    copy_entry("mnist_cnn", user)
    shutil.copy(SHIPPED_DIR / "gpt_tang.tokenizer.json", user / "mnist_cnn.tokenizer.json")
    with pytest.raises(pretrained.WeightsIntegrityError, match="does not list"):
        pretrained.load_tokenizer("mnist_cnn")


def test_a_card_without_hashes_loads_with_a_warning(tmp_path, monkeypatch):
    """Weights retrained by an older version of the course: usable, but with a warning to retrain."""
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path))
    user = tmp_path / "weights"
    copy_entry("gpt_shakespeare", user)
    card = json.loads((user / "gpt_shakespeare.json").read_text(encoding="utf-8"))
    del card["sha256"]
    (user / "gpt_shakespeare.json").write_text(json.dumps(card), encoding="utf-8")
    with pytest.warns(pretrained.UnverifiedWeightsWarning) as record:
        model, loaded = load_pretrained("gpt_shakespeare")
    message = str(record[0].message)
    assert str(user / "gpt_shakespeare.safetensors") in message
    assert "`python -m aigc_course.train gpt_shakespeare`" in message
    assert "sha256" not in loaded
    with pytest.warns(pretrained.UnverifiedWeightsWarning, match="tokenizer"):
        pretrained.load_tokenizer("gpt_shakespeare")


def test_loading_never_unpickles(monkeypatch):
    import pickle

    import torch

    from aigc_course.models import build_model  # noqa: F401  (imported before pickle is disabled)
    from aigc_course.text import tokenizers  # noqa: F401

    def refuse(*args, **kwargs):
        raise AssertionError("loading used pickle")

    for module, attr in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (torch, "load")):
        monkeypatch.setattr(module, attr, refuse)
    for name in ("mnist_cnn", "seq2seq_en_zh", "gpt_tang"):
        load_pretrained(name)
    pretrained.load_tokenizer("gpt_tang")
    pretrained.load_tokenizer("seq2seq_en_zh", "src")


def test_verification_reads_each_version_of_a_file_once(tmp_path, monkeypatch):
    import os

    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path))
    copy_entry("mnist_cnn", tmp_path / "weights")
    hashed = []
    monkeypatch.setattr(pretrained, "sha256sum", lambda p: hashed.append(p) or sha256sum(p))
    load_pretrained("mnist_cnn")
    load_pretrained("mnist_cnn")
    assert len(hashed) == 1
    weights = tmp_path / "weights" / "mnist_cnn.safetensors"
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a new version
    load_pretrained("mnist_cnn")
    assert len(hashed) == 2


def test_save_pretrained_records_the_hashes_after_the_files(tmp_path, monkeypatch):
    """The card is written last, in one rename, with the SHA-256 of the files already on disk."""
    import torch

    from aigc_course.models import GPT, GPTConfig
    from aigc_course.pretrained import save_pretrained
    from aigc_course.text.tokenizers import CharTokenizer

    out = tmp_path / "weights"
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path))
    src, tgt = CharTokenizer.from_text("abc"), CharTokenizer.from_text("xyz")
    model = GPT(GPTConfig.tiny(vocab_size=5, block_size=8))
    card = {"name": "demo", "arch": "gpt", "config": model.config_dict(),
            "train_command": "python -m aigc_course.train demo", "metrics": {}, "device": "cpu"}
    renames = []
    real_replace = pretrained.os.replace

    def spy(tmp, dest):
        dest = type(out)(dest)
        if dest.name == "demo.json":  # by now every other file is in place and hashed in the card
            written = json.loads(type(out)(tmp).read_text(encoding="utf-8"))
            renames.append(written)
            for file, digest in written["sha256"].items():
                assert sha256sum(out / file) == digest
        return real_replace(tmp, dest)

    monkeypatch.setattr(pretrained.os, "replace", spy)
    save_pretrained(model, "demo", card, tokenizer={"src": src, "tgt": tgt})
    assert len(renames) == 1
    saved = json.loads((out / "demo.json").read_text(encoding="utf-8"))
    assert sorted(saved["sha256"]) == entry_files(out, "demo") == [
        "demo.safetensors", "demo.src.tokenizer.json", "demo.tgt.tokenizer.json"]
    assert list(saved)[:5] == ["name", "arch", "config", "train_command", "sha256"]  # next to the command
    assert "sha256" not in card  # the caller's dict is left alone
    assert not list(out.glob("*.tmp"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded, _ = load_pretrained("demo")
    idx = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(loaded(idx), model.eval()(idx))
    assert pretrained.load_tokenizer("demo", "tgt").chars == tgt.chars
    # saving again (a retrain) replaces the hashes; the stale ones would fail the check
    torch.manual_seed(1)
    save_pretrained(GPT(GPTConfig.tiny(vocab_size=5, block_size=8)), "demo", card)
    assert sorted(json.loads((out / "demo.json").read_text(encoding="utf-8"))["sha256"]) == ["demo.safetensors"]
    load_pretrained("demo")
    with pytest.raises(pretrained.WeightsIntegrityError, match="does not list"):
        pretrained.load_tokenizer("demo", "tgt")  # left over from the first save


def test_a_failed_card_write_leaves_the_old_card(tmp_path, monkeypatch):
    from aigc_course.models import GPT, GPTConfig
    from aigc_course.pretrained import save_pretrained

    out = tmp_path / "weights"
    model = GPT(GPTConfig.tiny(vocab_size=5, block_size=8))
    card = {"arch": "gpt", "config": model.config_dict(), "train_command": "python -m aigc_course.train d",
            "metrics": {}}
    save_pretrained(model, "d", card, out)
    before = (out / "d.json").read_text(encoding="utf-8")
    real_replace = pretrained.os.replace

    def fail_on_card(tmp, dest):
        if str(dest).endswith("d.json"):
            raise OSError("disk full")
        return real_replace(tmp, dest)

    monkeypatch.setattr(pretrained.os, "replace", fail_on_card)
    with pytest.raises(OSError):
        save_pretrained(model, "d", {**card, "metrics": {"x": 1}}, out)
    assert (out / "d.json").read_text(encoding="utf-8") == before
    assert not list(out.glob("*.tmp"))


@needs_data
def test_retrain_command_writes_a_loadable_card(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path))
    from aigc_course.cli import main

    main(["mnist_cnn", "--fast"])
    card = json.loads((tmp_path / "weights" / "mnist_cnn.json").read_text())
    assert card["train_command"].endswith("--fast")
    assert card["sha256"] == {"mnist_cnn.safetensors": sha256sum(tmp_path / "weights" / "mnist_cnn.safetensors")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a retrained card is checked, not merely trusted
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
