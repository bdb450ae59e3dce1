"""The tiny assistant's data, chat template and recipe (aigc_course.assistant.tasks / chat / models)."""

from __future__ import annotations

import json
import re

import pytest
import torch

from aigc_course.assistant import chat, tasks
from aigc_course.assistant.chat import (
    ASSISTANT,
    END,
    USER,
    ChatTokenizer,
    encode_sft,
    format_prompt,
)
from aigc_course.assistant.tasks import TASKS, TEMPLATES, Example, check, make_examples, success


def _key(task, item):
    if task == "translate":
        return item.en.lower()
    if task == "poem":
        return item.lines[:2]
    return item


@pytest.mark.parametrize("task", TASKS)
def test_splits_are_disjoint_in_their_items(task):
    p = tasks.pools(task)
    keys = {s: {_key(task, x) for x in p[s]} for s in tasks.SPLITS}
    assert all(keys[s] for s in tasks.SPLITS)
    assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"] and not keys["val"] & keys["test"]


def test_examples_are_deterministic_even_and_from_their_split():
    a = make_examples("test", 50, seed=3)
    assert [e.instruction for e in a] == [e.instruction for e in make_examples("test", 50, seed=3)]
    assert [e.instruction for e in a] != [e.instruction for e in make_examples("test", 50, seed=4)]
    assert sorted(e.task for e in a) == sorted(TASKS * 10)
    train_items = {e.meta["item"] for e in make_examples("train", 500, seed=0, tasks=("arith", "poem"))}
    test_items = {e.meta["item"] for e in make_examples("test", 500, seed=0, tasks=("arith", "poem"))}
    assert not train_items & test_items
    for e in a:  # the gold response is a success
        assert success(e, e.response) or e.task in ("persona",), (e.task, e.instruction, e.response)


def _pattern(template: str) -> re.Pattern:
    parts = re.split(r"\{\w+\}", template)
    return re.compile(".+".join(re.escape(p) for p in parts), re.S)


def test_heldout_phrasings_really_differ():
    for kind, (train_t, held_t) in TEMPLATES.items():
        assert len(train_t) >= 3 and len(held_t) >= 2 and not set(train_t) & set(held_t), kind
    held = make_examples("test", 200, seed=0, phrasing="heldout")
    all_train_patterns = [_pattern(t) for ts, _ in TEMPLATES.values() for t in ts]
    for e in held:
        assert not any(p.fullmatch(e.instruction) for p in all_train_patterns), e.instruction
    train = make_examples("test", 200, seed=0, phrasing="train")
    assert all(any(p.fullmatch(e.instruction) for p in all_train_patterns) for e in train)
    assert [e.response for e in train] == [e.response for e in held]  # paired: only the wording differs


def _ex(task, **meta):
    return Example(task, "q", "a", meta)


def test_exact_match_checkers():
    e = _ex("arith", answer="104", kind="add")
    assert check(e, "104") == 1.0 and check(e, " 104\n") == 1.0 and success(e, "104")
    assert check(e, "105") == 0.0 and check(e, "") == 0.0 and check(e, "1040") == 0.0
    s = _ex("string", answer="elkcim", kind="reverse")
    assert check(s, "elkcim") == 1.0 and check(s, "Elkcim") == 0.0 and not success(s, "mickle")
    c = make_examples("train", 40, seed=1, tasks="string")
    for ex in c:
        assert success(ex, ex.response)
        if ex.meta["kind"] == "count":
            assert ex.response == str(ex.meta["item"].count(ex.meta["letter"]))


def test_translation_checker_uses_character_bleu():
    e = _ex("translate", reference="我想回家。")
    assert check(e, "我想回家。") == pytest.approx(1.0) and success(e, "我想回家。")
    assert check(e, "") == 0.0 and check(e, "你好") == 0.0 and not success(e, "猫")
    partial = check(e, "我想回。")
    assert 0.0 < partial < 1.0


def test_poem_checker_form_head_and_continuation():
    l1, l2 = "白日依山盡，黃河入海流。", "欲窮千里目，更上一層樓。"
    w = _ex("poem", kind="write", head="白")
    assert check(w, f"{l1}\n{l2}") == 1.0 and success(w, f"{l1}\n{l2}")
    assert check(w, f"{l2}\n{l1}") == 0.5  # right form, wrong first character
    assert check(w, l1) == 0.5 and check(w, "白日依山盡") == 0.5  # head only: one line / no form
    assert check(w, "") == 0.0 and check(w, "hello\nworld") == 0.0
    boxes = "□□□□□，□□□□□。"  # unknown-character tokens are no characters
    assert check(w, f"{boxes}\n{boxes}") == 0.0 and check(w, f"白{boxes[1:]}\n{l2}") == 0.5
    c = _ex("poem", kind="continue", first_line=l1)
    assert check(c, l2) == 1.0 and check(c, l1) == 0.0  # copying the given line is no continuation
    assert check(c, "白日依山盡，黃河入海流") == 0.0 and check(c, f"{l2}\n{l2}") == 0.0


def test_persona_checker_is_the_speaker_classifier():
    clf = tasks.persona_classifier()
    romeo = [tasks.first_line(t) for who, t in tasks.pools("persona")["train"] if who == "ROMEO"]
    speech = max(romeo, key=lambda x: clf.predict_proba([x])[0][list(clf.classes_).index("ROMEO")])
    assert clf.predict([speech])[0] == "ROMEO"  # a training line the classifier knows
    mine, other = _ex("persona", speaker="ROMEO"), _ex("persona", speaker="MENENIUS")
    assert success(mine, speech) and not success(other, speech)
    assert check(mine, speech) > check(other, speech)
    assert check(mine, "") == 0.0 and check(mine, "x" * 1000) == 0.0
    assert 0.0 <= check(mine, "Good morrow.") <= 1.0


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match="split"):
        make_examples("dev", 5)
    with pytest.raises(ValueError, match="task"):
        make_examples("train", 5, tasks=("arith", "chess"))
    with pytest.raises(ValueError, match="task"):
        make_examples("train", 5, tasks=())
    with pytest.raises(ValueError, match="phrasing"):
        make_examples("train", 5, phrasing="new")
    with pytest.raises(ValueError, match="task"):
        check(_ex("chess"), "x")
    with pytest.raises(TypeError):
        check(_ex("arith", answer="1"), None)
    with pytest.raises(ValueError, match="role token"):
        format_prompt(f"hi {END}")
    from aigc_course.assistant.models import load_or_train

    with pytest.raises(ValueError, match="assistant_sft"):
        load_or_train("assistant_rlhf")


def test_pretraining_text_has_no_instructions_and_no_held_out_items():
    text = tasks.pretraining_text(max_chars=None)
    assert not any(s in text for s in (USER, ASSISTANT, END, "Translate into Chinese"))
    for p in tasks.pools("poem")["test"][:50]:
        assert p.lines[0] not in text
    for a, op, b in tasks.pools("arith")["test"][:50]:
        assert f"\n{a} {op} {b} = " not in text
    assert len(tasks.pretraining_text(max_chars=1000)) == 1000


@pytest.fixture(scope="module")
def tok():
    return ChatTokenizer.from_text("hello world 你好。" * 3 + "罕", max_other=3)


def test_tokenizer_round_trip_with_role_tokens(tok, tmp_path):
    text = format_prompt("hello") + "你好。" + END
    ids = tok.encode(text)
    assert ids[0] == tok.user_id and ids[-1] == tok.end_id and tok.assistant_id in ids
    assert len(ids) == 1 + 5 + 1 + 3 + 1  # each role token is one id
    assert tok.decode(ids) == text and tok.decode(ids, skip_special=True) == "hello你好。"
    assert tok.decode(tok.encode("罕")) == chat.UNK  # rarer than the cap: unknown
    tok.save(tmp_path / "t.json")
    from aigc_course.text.tokenizers import load_tokenizer_file

    again = load_tokenizer_file(tmp_path / "t.json")
    assert isinstance(again, ChatTokenizer) and again.encode(text) == ids and again.vocab_size == tok.vocab_size
    assert {tok.user_id, tok.assistant_id, tok.end_id} == {0, 1, 2}


def test_encode_sft_masks_exactly_prompt_and_padding(tok):
    pairs = [("hello", "world"), ("hello world hello", "你好")]
    T = 40
    ids, y = encode_sft(tok, pairs, T)
    assert ids.shape == y.shape == (2, T)
    for row, (q, a) in enumerate(pairs):
        n_prompt = len(tok.encode(format_prompt(q)))
        n_all = n_prompt + len(tok.encode(a)) + 1
        pad = T - (n_all - 1)
        assert int((y[row] == -100).sum()) == (n_prompt - 1) + pad
        assert tok.decode(y[row][y[row] != -100]) == a + END  # trained: the response and END
        assert (ids[row, n_all - 1:] == tok.pad_id).all()
    _, y_all = encode_sft(tok, pairs, T, response_only=False)
    n0 = len(tok.encode(format_prompt("hello") + "world")) + 1
    assert int((y_all[0] == -100).sum()) == T - (n0 - 1)  # padding only
    with pytest.raises(ValueError, match="block_size"):
        encode_sft(tok, pairs, 8)


class _Scripted(torch.nn.Module):
    """Next token: 'o' after anything but 'o', END after 'o' (so every reply is 'o')."""

    def __init__(self, tok, block_size=32, stops=True):
        super().__init__()
        self.stops = stops
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.config = type("C", (), {"block_size": block_size})()
        self.o, self.end, self.V = tok.encode("o")[0], tok.end_id, tok.vocab_size

    def forward(self, idx):
        logits = torch.zeros(*idx.shape, self.V)  # (B, T, V)
        is_o = idx == self.o
        logits[..., self.o] = (~is_o | (not self.stops)).float()
        logits[..., self.end] = (is_o & self.stops).float()
        return logits


def test_reply_stops_at_end_and_batches_ragged_prompts(tok):
    m = _Scripted(tok)
    assert chat.reply(m, tok, "hello") == "o"
    assert chat.replies(m, tok, ["h", "hello world", "你好"]) == ["o", "o", "o"]
    never = _Scripted(tok, stops=False)  # never ends: cut at max_new_tokens
    assert chat.replies(never, tok, ["h", "hello"], max_new_tokens=5) == ["ooooo"] * 2
    sampled = [chat.replies(m, tok, ["h"] * 4, temperature=1.0, generator=torch.Generator().manual_seed(0))
               for _ in range(2)]
    assert sampled[0] == sampled[1]  # a seeded generator repeats
    unk = _Scripted(tok, stops=False)
    unk.o = tok.unk_id  # prefers the unknown character, which is never generated by default
    assert chat.UNK not in chat.reply(unk, tok, "h", max_new_tokens=3)
    assert chat.reply(unk, tok, "h", max_new_tokens=3, allow_unk=True) == chat.UNK * 3
    with pytest.raises(ValueError, match="block_size"):
        chat.reply(m, tok, "h" * 40)


def test_recipe_runs_fast_into_a_folder(tmp_path):
    import importlib

    from aigc_course.pretrained import user_weights_dir
    from aigc_course.recipes import RECIPES, assistant_gpt, run

    for name in ("assistant_gpt", "assistant_base", "assistant_sft"):  # each entry's card names itself
        assert importlib.import_module(RECIPES[name]).train is assistant_gpt.train
    before = sorted(user_weights_dir().glob("assistant_*")) if user_weights_dir().is_dir() else []
    card = run("assistant_gpt", out_dir=tmp_path, fast=True)
    names = {p.name for p in tmp_path.iterdir()}
    for n in ("assistant_base", "assistant_sft"):
        assert {f"{n}.safetensors", f"{n}.json", f"{n}.tokenizer.json"} <= names
        c = json.loads((tmp_path / f"{n}.json").read_text())
        assert set(c["metrics"]["success_heldout_phrasing"]) == set(TASKS) | {"all"}
    assert card["metrics"]["sft_val_loss"] > 0
    after = sorted(user_weights_dir().glob("assistant_*")) if user_weights_dir().is_dir() else []
    assert before == after  # nothing written to the user's cache
