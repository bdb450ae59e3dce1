"""Chapter 6.3: cloze items from a masked LM, the Rasch simulation, the verse tutor, the guarded LLM."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from aigc_course.apps import exercises as ex
from aigc_course.apps.tutor import (
    RULES,
    VerseRules,
    continue_poem,
    pass_rates,
    sample_quatrains,
    verses,
)
from aigc_course.models import GPT, GPTConfig, MaskedLM, MaskedLMConfig
from aigc_course.text.tokenizers import CharTokenizer
from aigc_course.text.vocab import Vocab

SENTS = [s.split() for s in ["i want to go home .", "tom is my friend .", "where did you put the money ?",
                             "she can speak french .", "i want to eat now ."]]


@pytest.fixture(scope="module")
def mlm_and_vocab():
    base = Vocab.build(SENTS)
    vocab = Vocab(base.tokens + ["[MASK]"])
    torch.manual_seed(0)
    cfg = MaskedLMConfig.tiny(vocab_size=len(vocab), block_size=16, mask_id=len(vocab) - 1, pad_id=0)
    return MaskedLM(cfg).eval(), vocab


# ---------------------------------------------------------------- cloze items
def test_word_kind_and_variants():
    assert ex.word_kind("don't") == "word" and ex.word_kind("42") == "number" and ex.word_kind(".") == "other"
    assert ex.is_variant("go", "goes") and ex.is_variant("goes", "go") and not ex.is_variant("go", "to")


def test_blank_probs_match_a_forward_pass(mlm_and_vocab):
    model, vocab = mlm_and_vocab
    probs = ex.blank_probs(model, vocab, SENTS[:2], [1, 3])
    assert probs.shape == (2, len(vocab))
    torch.testing.assert_close(probs.sum(-1), torch.ones(2))
    x = torch.tensor([vocab.encode(SENTS[0])])
    x[0, 1] = model.config.mask_id
    torch.testing.assert_close(probs[0], torch.softmax(model(x)[0, 1], -1))
    with pytest.raises(ValueError, match="one blank position per sentence"):
        ex.blank_probs(model, vocab, SENTS[:2], [1])


def test_make_cloze_keys_are_original_and_items_well_formed(mlm_and_vocab):
    model, vocab = mlm_and_vocab
    cfg = ex.ClozeConfig(top_k=8, min_prob=0.0, ambiguity_ratio=100.0)  # accept whatever is not attested
    items = ex.make_cloze(model, vocab, SENTS, cfg, seed=0)
    assert len(items) == len(SENTS)
    for it in items:
        assert it.answer == it.words[it.position] and ex.word_kind(it.answer) == "word"
        assert it.prompt().count("____") == 1
        if it.status == "accepted":
            assert len(it.distractors) == 3 and it.answer not in it.distractors
            assert sorted(it.options(seed=3)) == sorted([it.answer, *it.distractors])
        assert it.difficulty == pytest.approx(-torch.logit(torch.tensor(it.p_answer)).item(), abs=1e-4)
    again = ex.make_cloze(model, vocab, SENTS, cfg, seed=0)
    assert [(i.position, i.distractors) for i in again] == [(i.position, i.distractors) for i in items]


def test_ambiguity_rules_reject(mlm_and_vocab):
    model, vocab = mlm_and_vocab
    strict = ex.make_cloze(model, vocab, SENTS, ex.ClozeConfig(top_k=8, ambiguity_ratio=1e-6), seed=0)
    assert all(it.status == "ambiguous" and "likely" in it.reason for it in strict)
    # every candidate that fills the blank into a sentence of the corpus makes the item ambiguous
    every = {tuple(s[:p] + [w] + s[p + 1:]) for s in SENTS for p in range(len(s)) for w in vocab.tokens}
    attested = ex.make_cloze(model, vocab, SENTS, ex.ClozeConfig(top_k=8, ambiguity_ratio=100.0), corpus=every)
    assert all(it.status == "ambiguous" and "corpus" in it.reason for it in attested)
    with pytest.raises(ValueError, match="ambiguity_ratio"):
        ex.ClozeConfig(ambiguity_ratio=0.0)


def test_distractor_quality_measures(mlm_and_vocab):
    _, vocab = mlm_and_vocab
    it = ex.ClozeItem("i want to go home .".split(), 3, "go", 0.5, "go", ["eat", "home", "want"], [0.1] * 3)
    bigrams = ex.sentence_bigrams(SENTS)
    assert bigrams[("to", "go")] == 1 and bigrams[("<s>", "i")] == 2
    assert ex.bigram_guess_accuracy([it], [it.distractors], bigrams) == 1.0  # "to go" and "go home" seen
    assert ex.bigram_guess_accuracy([it], [["x", "y", "z"]], Counter()) == pytest.approx(0.25)  # all unseen
    rand = ex.random_distractors([it], vocab, Counter(w for s in SENTS for w in s), n=3, seed=0)
    assert len(rand[0]) == 3 and "go" not in rand[0] and all(ex.word_kind(w) == "word" for w in rand[0])


# ---------------------------------------------------------------- Rasch simulation
def test_rasch_and_adaptive_practice_beats_random():
    g = torch.Generator().manual_seed(0)
    b = torch.randn(200, generator=g) * 1.5
    theta = torch.randn(400, generator=g)
    assert ex.rasch_p(torch.tensor(0.0), torch.tensor(0.0)) == pytest.approx(0.5)
    err = {}
    for select in ("adaptive", "random"):
        r = ex.simulate_practice(b, b, theta, ex.PracticeConfig(n_items=20, select=select), seed=1)
        assert r["estimate"].shape == (400, 21) and r["predicted"].shape == (400, 20)
        assert set(r["correct"].unique().tolist()) <= {0.0, 1.0}
        assert all(len(set(row.tolist())) == 20 for row in r["items"][:10])  # no item asked twice
        err[select] = ((r["estimate"][:, -1] - theta) ** 2).mean().sqrt()
    assert err["adaptive"] < err["random"] < 1.0
    elo = ex.simulate_practice(b, b, theta, ex.PracticeConfig(n_items=20, estimator="elo"), seed=1)
    assert ((elo["estimate"][:, -1] - theta) ** 2).mean().sqrt() < 1.0
    with pytest.raises(ValueError, match="n_items"):
        ex.simulate_practice(b, b, theta, ex.PracticeConfig(n_items=500))
    with pytest.raises(ValueError, match="select"):
        ex.PracticeConfig(select="greedy")


def test_reliability_bins():
    p = torch.tensor([0.05, 0.15, 0.95, 0.95])
    y = torch.tensor([0.0, 0.0, 1.0, 0.0])
    mean_p, rate, count, ece = ex.reliability_bins(p, y, n_bins=10)
    assert count.tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert rate[9] == pytest.approx(0.5) and ece == pytest.approx((0.05 + 0.15 + 2 * 0.45) / 4)
    with pytest.raises(ValueError):
        ex.reliability_bins(p, y[:2])


# ---------------------------------------------------------------- the LLM's items, checked
def test_llm_items_parse_and_check():
    text = "tom is taller than mary . i want to go home ."
    reply = ("1. tom is ___ than mary . | taller | shorter, older, bigger\n"
             "2. tom is ___ than mary . | smaller | shorter, older, bigger\n"
             "some chatter\n"
             "3. i want to ___ home . | go | GO, run, walk\n"
             "4. ___ want to ___ home . | go | a, b, c")
    items = ex.parse_llm_items(reply)
    assert len(items) == 4 and items[0]["answer"] == "taller"
    assert ex.check_llm_item(items[0], text) == []
    assert any("does not restore" in p for p in ex.check_llm_item(items[1], text))
    problems = ex.check_llm_item(items[2], text)
    assert any("also among the distractors" in p for p in problems)
    assert "blanks" in ex.check_llm_item(items[3], text)[0]
    assert "{n}" in ex.LLM_PROMPT and "{text}" in ex.LLM_PROMPT


def test_real_section_runs_on_the_tiny_instruct_model():
    pytest.importorskip("transformers")
    from aigc_course.apps import hub

    text = "tom is taller than mary .\ni want to go home ."
    llm, tok = hub.tiny_instruct_lm(seed=0)
    replies = hub.chat(llm, tok, ex.LLM_PROMPT.format(n=2, text=text), max_new_tokens=16, num_return_sequences=2)
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)
    items = [it for r in replies for it in ex.parse_llm_items(r)]
    assert all(isinstance(ex.check_llm_item(it, text), list) for it in items)


# ---------------------------------------------------------------- the verse tutor
POEMS = [["白日依山盡，黃河入海流。", "欲窮千里目，更上一層樓。"],
         ["春風吹柳綠，明月照江流。", "落日千山暮，孤舟一夜愁。"],
         ["寒雲生遠樹，秋水入高樓。", "夜雨孤燈下，青山萬里秋。"]]


@pytest.fixture(scope="module")
def rules():
    return VerseRules.fit(POEMS * 3)


def test_verses_and_fit(rules):
    assert verses(POEMS[0]) == ["白日依山盡", "黃河入海流", "欲窮千里目", "更上一層樓"]
    assert rules.tone("流") == "平" and rules.tone("目") == "仄"  # rhyme vs odd-verse end
    assert not rules.may_rhyme("樓", "愁")  # one shared partner (流) is not enough
    assert rules.tone("龘") == "?"
    assert rules.may_rhyme("流", "樓") and rules.may_rhyme("流", "愁")
    with pytest.raises(ValueError, match="regular poems"):
        VerseRules.fit([["not a poem"]])


def test_check_reports_each_rule(rules):
    report = rules.check(POEMS[0])
    assert set(report) == set(RULES) and report["form"].passed and report["rhyme"].passed
    bad = rules.check(["白日依山盡，黃河入海流。", "欲窮千里目，更上一層目。"])
    assert not bad["rhyme"].passed and any("oblique" in p for p in bad["rhyme"].problems)
    short = rules.check(["白日依山，黃河入海流。"])
    assert not short["form"].passed and short["tones"].problems == ["not checked: fix the form first"]
    assert not rules.check(POEMS[0][:1])["form"].passed  # one line is no complete quatrain
    assert rules.check(POEMS[0][:1], complete=False)["form"].passed
    assert "[pass] form" in rules.feedback(POEMS[0])
    rates = pass_rates(rules, [POEMS[0], ["bad"]])
    assert rates["form"] == 0.5 and set(rates) == {*RULES, "all"}
    with pytest.raises(ValueError):
        rules.check([])


@pytest.fixture(scope="module")
def tiny_gpt():
    chars = sorted({c for p in POEMS for line in p for c in line} | {"\n", "□"})
    tok = CharTokenizer(chars, unk="□")
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=len(chars), block_size=64, n_layer=1, n_head=2, n_embd=16)).eval(), tok


def test_continue_poem_and_sample_quatrains(rules, tiny_gpt):
    model, tok = tiny_gpt
    cands, good = continue_poem(model, tok, POEMS[0][:1], rules, n=8, seed=0)
    assert len(cands) == 8 and set(good) <= set(cands)
    assert all(all(r.passed for r in rules.check(POEMS[0][:1] + [c]).values()) for c in good)
    again, _ = continue_poem(model, tok, POEMS[0][:1], rules, n=8, seed=0)
    assert again == cands
    with pytest.raises(ValueError, match="regular lines"):
        continue_poem(model, tok, ["bad"], rules)
    quatrains = sample_quatrains(model, tok, n=3, seed=0)
    assert len(quatrains) == 3 and all(len(q) <= 2 for q in quatrains)


# ---------------------------------------------------------------- the shipped weights' recipe
def test_masked_lm_recipe_runs_in_fast_mode(tmp_path):
    from aigc_course.pretrained import load_tensors
    from aigc_course.recipes import RECIPES
    from aigc_course.recipes.masked_lm_tatoeba import NAME, train

    assert RECIPES[NAME] == "aigc_course.recipes.masked_lm_tatoeba"
    card = train(out_dir=tmp_path, fast=True)
    assert card["arch"] == "masked_lm" and 0.0 <= card["metrics"]["heldout_top1"] <= 1.0
    tensors, _ = load_tensors(tmp_path / f"{NAME}.safetensors")
    assert all(t.dtype == torch.float16 for t in tensors.values())
    assert (tmp_path / f"{NAME}.tokenizer.json").is_file()
