"""Chapter 6.2 (games and entertainment): levels, folk tunes, NPC dialogue and their recipes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aigc_course.apps import dialogue, levels, music
from aigc_course.models import GPT, GPTConfig
from aigc_course.pretrained import load_pretrained, load_tokenizer
from aigc_course.recipes import run
from aigc_course.text.tokenizers import CharTokenizer

# ---------------------------------------------------------------- levels: hand-made, known answers
CORRIDOR = "######\n#S..E#\n######"  # 3 steps right: a path of 4 cells
WALLED = "#######\n#S.#.E#\n#######"  # a wall between start and exit
LOCKED = "#######\n#S.D.E#\n#######"  # a door and no key
KEY_DETOUR = "#######\n#K#####\n#S.D.E#\n#######"  # the key is one step up from the start
KEY_BEHIND = "########\n#S.D.KE#\n########"  # the key lies behind its own door
TWO_WAYS = "#######\n#S...E#\n#.###.#\n#.....#\n#######"


def test_find_path_on_hand_made_levels():
    path = levels.find_path(CORRIDOR)
    assert path == [(1, 1), (1, 2), (1, 3), (1, 4)]
    assert levels.find_path(WALLED) is None
    assert levels.find_path(LOCKED) is None
    assert levels.find_path(KEY_BEHIND) is None
    # up to the key, back down, through the door: S(2,1) -> K(1,1) -> (2,1) -> ... -> E(2,5)
    detour = levels.find_path(KEY_DETOUR)
    assert detour[0] == (2, 1) and detour[1] == (1, 1) and detour[-1] == (2, 5) and len(detour) == 7
    assert len(levels.find_path(TWO_WAYS)) == 5  # BFS takes the short way along the top


def test_path_steps_are_orthogonal_and_avoid_walls():
    rows = TWO_WAYS.split("\n")
    path = levels.find_path(TWO_WAYS)
    for (r0, c0), (r1, c1) in zip(path, path[1:]):
        assert abs(r0 - r1) + abs(c0 - c1) == 1 and rows[r1][c1] != levels.WALL


def test_check_valid_names_the_problem():
    assert levels.check_valid(CORRIDOR) is None
    assert levels.check_valid("####\n#S.E#\n####") == "not rectangular"
    assert levels.check_valid("######\n#SS.E#\n######") == "2 starts"
    assert levels.check_valid("######\n#S..##\n######") == "0 exits"
    assert levels.check_valid("######\n#S.xE#\n######") == "unknown tile"
    assert levels.check_valid("######\n#SK.E#\n######") == "key/door mismatch"
    assert levels.check_valid(CORRIDOR, width=6, height=4) == "wrong size"
    assert levels.verdict(WALLED) == "no path" and levels.verdict(CORRIDOR) == "playable"
    with pytest.raises(ValueError, match="rectangular"):
        levels.find_path("####\n#S.E#")


def test_generator_is_seeded_and_every_level_is_playable():
    cfg = levels.LevelConfig()
    a, b = levels.generate_levels(30, cfg, seed=3), levels.generate_levels(30, cfg, seed=3)
    assert a == b and a != levels.generate_levels(30, cfg, seed=4)
    for level in a:
        assert levels.check_valid(level, cfg.width, cfg.height) is None and levels.is_playable(level)
    assert 0 < sum(levels.KEY in lv for lv in a) < len(a)  # some levels have a key, some do not
    with pytest.raises(ValueError, match="width"):
        levels.LevelConfig(width=4)


def test_corpus_round_trip_and_novelty_scores():
    lv = levels.generate_levels(6, seed=0)
    text = levels.level_corpus(lv)
    assert levels.split_sample(text) == lv[0]
    nov = levels.novelty(lv[:2], lv)
    assert nov["novel"] == 0.0 and nov["nn_mean"] == 0.0  # copies: distance 0
    changed = lv[0].replace(".", "#", 1)
    assert levels.novelty([changed], lv)["nn_distance"].tolist() == [1]
    assert levels.diversity([lv[0], lv[0]]) == 0.0 and levels.diversity(lv) > 0
    assert (levels.nearest_distances(lv, lv, exclude_self=True) > 0).all()


def test_sample_levels_with_a_random_gpt_returns_texts():
    tok = CharTokenizer(sorted("\n" + levels.TILES))
    torch.manual_seed(0)
    model = GPT(GPTConfig.tiny(vocab_size=tok.vocab_size, block_size=176))
    out = levels.sample_levels(model, tok, 3, seed=0)
    assert len(out) == 3 and all(isinstance(x, str) for x in out)
    assert out == levels.sample_levels(model, tok, 3, seed=0)
    cfg = levels.LevelConfig()
    shaped = levels.sample_levels_constrained(model, tok, 4, cfg, temperature=1.5, seed=0, once="SEKD")
    for lv in shaped:  # constrained decoding: always 10 rows of 16 tiles, S, E, K and D at most once
        assert [len(row) for row in lv.split("\n")] == [cfg.width] * cfg.height
        assert all(lv.count(t) <= 1 for t in "SEKD") and set(lv) <= set(levels.TILES + "\n")


# ---------------------------------------------------------------- music
TWO_TUNES = """X:1
T:First
M:2/4
L:1/8
K:D
"A"d2 {e}fa | (ag) fe |\\
 d2 fa | b2 a2 |]

X:2
T:Second
M:3/4
K:Gm
G2 A2 B2 | d6 |]
"""
GOOD = "M:2/4\nL:1/8\nK:D\nA2 | d2 fa | ag fe | d2 fa | b2 a2 | d2 fa | ag fe | d2 A2 | D4 |]"
BAD_BARS = "M:2/4\nL:1/8\nK:D\nA2 | d2 fa g | ag | d2 fa | b2 a2 a | d2 fa | ag fe e | D4 |]"


def test_split_and_clean_tunes():
    tunes = music.split_tunes(TWO_TUNES)
    assert [t["K"] for t in tunes] == ["D", "Gm"] and tunes[1]["L"] == "1/8"
    body = music.clean_body(tunes[0]["body"])
    assert body == "d2 fa | ag fe | d2 fa | b2 a2 |]"
    assert music.clean_body("(3ABc (de)") == "(3ABc de"  # tuplets stay, slurs go


def test_header_key_and_prompt():
    assert music.header_key("Em") == ("E", "minor")
    assert music.header_key("Bb") == ("B-", "major")
    assert music.header_key("Dmix") == ("D", "mixolydian")
    with pytest.raises(ValueError, match="Unknown key"):
        music.header_key("H")
    assert music.header_prompt("6/8", "G") == "\n\nM:6/8\nL:1/8\nK:G\n"


def test_check_tune_on_known_tunes():
    good = music.check_tune(GOOD)
    assert good.parsed and good.key_heard == "D major" and good.key_match and good.metre_share == 1.0
    bad = music.check_tune(BAD_BARS)
    assert bad.parsed and bad.metre_share < 1.0
    assert not music.check_tune("d2 fa | ag fe").parsed  # no header
    summary = music.summarize_checks([good, bad, music.TuneCheck()])
    assert summary["n"] == 3 and summary["parsed"] == pytest.approx(2 / 3)


def test_synthesizer_and_events():
    events = music.note_events(music.parse_tune(GOOD), bpm=120)
    assert events[0][:2] == (0.0, 0.5) and [e[3] for e in events[:2]] == [69, 74]  # A (A4), then d (D5)
    wave = music.synthesize(events, rate=8000)
    assert wave.dtype == np.float32 and abs(wave).max() <= 0.9 + 1e-6
    assert len(wave) == int((events[-1][0] + events[-1][1]) * 8000) + 1
    assert len(music.synthesize(events, rate=8000, seconds=1.0)) == 8001
    with pytest.raises(ValueError, match="rate"):
        music.synthesize(events, rate=100)


def test_bundled_corpus_loads():
    tunes = music.load_abc_tunes(("oneills1850",))
    assert len(tunes) > 1000 and all(music.HEADER_RE.match(t) for t in tunes)
    train, val = music.split_train_val(tunes, 0.05, seed=0)
    assert len(val) == int(len(tunes) * 0.05) and not set(val) & set(train) - set(val)


# ---------------------------------------------------------------- dialogue
PLAY = "ROMEO:\nO love, o night.\n\nMENENIUS:\nThe belly and the members.\n\nROMEO:\nSweet love!\n\n"


def test_speeches_and_prompts():
    assert dialogue.speeches(PLAY) == [("ROMEO", "O love, o night."), ("MENENIUS", "The belly and the members."),
                                       ("ROMEO", "Sweet love!")]
    assert dialogue.persona_prompt("ROMEO") == "\n\nROMEO:\n"
    prompts = dialogue.scene_prompts(PLAY, "ROMEO", 3, context_chars=10)
    assert prompts == ["e members.\n\nROMEO:\n"]  # only the second ROMEO speech follows a blank line
    with pytest.raises(ValueError, match="never speaks"):
        dialogue.scene_prompts(PLAY, "JULIET", 1)


def test_speaker_classifier_learns_two_voices():
    pairs = [("A", f"thou art {w} my love") for w in ("sweet", "fair", "true", "kind", "dear", "bright")]
    pairs += [("B", f"the belly of {w} rome") for w in ("great", "old", "proud", "free", "poor", "wide")]
    x_tr, y_tr, x_te, y_te = dialogue.speaker_split(pairs, ("A", "B"), 0.34, seed=0)
    assert len(x_te) == 4 and set(y_te) == {"A", "B"}
    clf = dialogue.train_speaker_classifier(x_tr, y_tr, dialogue.ClassifierConfig(min_df=1))
    hits = dialogue.persona_hits(clf, {"A": ["thou art my love"], "B": ["the belly of rome"]})
    assert hits["mean"] == 1.0 and hits["confusion"].tolist() == [[1, 0], [0, 1]]
    with pytest.raises(ValueError, match="at least 5"):
        dialogue.speaker_split(pairs, ("A", "C"))


def test_generate_speeches_with_a_random_gpt():
    tok = CharTokenizer.from_text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz:\n ,.!?'")
    torch.manual_seed(0)
    model = GPT(GPTConfig.tiny(vocab_size=tok.vocab_size, block_size=32))
    out = dialogue.generate_speeches(model, tok, "ROMEO", 2, max_chars=10, seed=0)
    assert len(out) == 2 and all("\n\n" not in s for s in out)
    with pytest.raises(ValueError, match="one length"):
        dialogue.generate_speeches(model, tok, "ROMEO", 2, prompts=["x\n\nROMEO:\n", "\n\nROMEO:\n"])


def test_npc_messages_and_reply_checks():
    p = dialogue.Persona("Mara", "the village smith", "briefly and gruffly", ["the mine is closed"], max_words=5)
    msgs = dialogue.npc_messages(p, "Can you fix my sword?")
    assert [m["role"] for m in msgs] == ["system", "user"] and "Mara" in msgs[0]["content"]
    assert dialogue.check_reply("Aye, leave it here.", p) == []
    assert dialogue.check_reply("As an AI I cannot hold a hammer", p) == ["8 words > 5", "says 'as an ai'"]
    assert dialogue.check_reply("  ", p) == ["empty"]
    with pytest.raises(ValueError, match="empty"):
        dialogue.npc_messages(p, " ")


def test_npc_candidates_on_the_tiny_instruct_model():
    pytest.importorskip("transformers")
    from aigc_course.apps import hub

    model, tok = hub.tiny_instruct_lm(seed=0)
    p = dialogue.Persona("Mara", "the village smith", "briefly")
    out = dialogue.npc_candidates(model, tok, p, "Hello!", n=2, max_new_tokens=6, seed=0)
    assert len(out) == 2 and all(set(c) == {"reply", "problems"} for c in out)


# ---------------------------------------------------------------- recipes
@pytest.mark.parametrize("name", ["gpt_levels", "gpt_abc"])
def test_recipe_runs_in_fast_mode_and_reloads(name, tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path))
    card = run(name, fast=True)
    assert card["train_command"] == f"python -m aigc_course.train {name} --fast"
    assert card["weights_dtype"] == "float16"
    model, card2 = load_pretrained(name)
    tok = load_tokenizer(name)
    assert card2["metrics"] == card["metrics"] and model.config.vocab_size == tok.vocab_size
