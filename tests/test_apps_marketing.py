"""Chapter 6.1: ad creatives, product copy, filters, the bandit A/B test and the guarded real models."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from data_marks import needs_data

from aigc_course.apps import marketing as mk
from aigc_course.diffusion import NoiseSchedule, ScheduleConfig
from aigc_course.models import GPT, GPTConfig, UNet, UNetConfig
from aigc_course.models.cnn import CNNClassifier, CNNConfig
from aigc_course.recipes import copy_gpt as pc


@pytest.fixture(scope="module")
def tiny_unet():
    torch.manual_seed(0)
    return UNet(UNetConfig(base=8, time_dim=32, num_classes=10)).eval(), NoiseSchedule(ScheduleConfig(num_steps=50))


@pytest.fixture(scope="module")
def tiny_clf():
    torch.manual_seed(0)
    return CNNClassifier(CNNConfig()).eval()


# ---------------------------------------------------------------- brief and creatives
def test_brief_checks_its_fields():
    b = mk.AdBrief("Sneaker", "premium", "long", 4)
    assert b.label == 7 and b.copy_brief == pc.CopyBrief("Sneaker", "premium", "long")
    with pytest.raises(ValueError, match="Unknown category 'Hat'"):
        mk.AdBrief("Hat")
    with pytest.raises(ValueError, match="Unknown tone"):
        mk.AdBrief("Bag", tone="angry")
    with pytest.raises(ValueError, match="n_variants"):
        mk.AdBrief("Bag", n_variants=0)


def test_generate_creatives_is_seeded_and_in_range(tiny_unet):
    unet, schedule = tiny_unet
    brief = mk.AdBrief("Bag", n_variants=3)
    a = mk.generate_creatives(unet, schedule, brief, guidance=2.0, num_steps=3, seed=1)
    b = mk.generate_creatives(unet, schedule, brief, guidance=2.0, num_steps=3, seed=1)
    assert a.shape == (3, 1, 28, 28) and a.abs().max() <= 1.0 + 1e-5
    torch.testing.assert_close(a, b)


def test_sample_products_needs_a_class_conditional_unet():
    plain = UNet(UNetConfig(base=8, time_dim=32))
    with pytest.raises(ValueError, match="class-conditional"):
        mk.sample_products(plain, NoiseSchedule(ScheduleConfig(num_steps=10)), torch.zeros(2).long())


# ---------------------------------------------------------------- filters
def test_score_images_shapes_and_bad_input(tiny_clf):
    x = torch.rand(5, 1, 28, 28) * 2 - 1
    s = mk.score_images(tiny_clf, x, 3)
    assert s.p_target.shape == (5,) and s.predicted.shape == (5,) and s.features.shape == (5, 64)
    torch.testing.assert_close(s.features.norm(dim=1), torch.ones(5))
    assert (s.p_predicted >= s.p_target - 1e-6).all()
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        mk.score_images(tiny_clf, torch.zeros(2, 28, 28), 0)


def _scores(p_target, predicted, feats):
    feats = torch.nn.functional.normalize(torch.tensor(feats, dtype=torch.float32), dim=1)
    p = torch.tensor(p_target)
    return mk.Scores(p, torch.tensor(predicted), p, feats)


def test_filter_rules_in_order_and_duplicates_keep_the_more_confident():
    # 0: good; 1: near copy of 0, less confident; 2: off-target; 3: low confidence; 4: good, distinct
    s = _scores([0.95, 0.90, 0.10, 0.50, 0.80], [1, 1, 4, 1, 1],
                [[1, 0, 0], [1, 0.001, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.7]])
    r = mk.filter_creatives(s, target=1, cfg=mk.FilterConfig(min_confidence=0.7, duplicate_distance=0.01))
    assert r.reason == [None, "near_duplicate", "off_target", "low_confidence", None]
    assert r.keep.tolist() == [True, False, False, False, True]
    assert r.rejected == {"off_target": 1, "low_confidence": 1, "near_duplicate": 1}
    assert r.flagged["low_confidence"] == 2  # the off-target image also has a low p_target
    assert r.rates()["off_target"] == pytest.approx(0.2)


def test_nearest_neighbour_distance():
    f = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [1, 0.01], [0, 1]]), dim=1)
    d = mk.nearest_neighbour_distance(f)
    assert d[0] == pytest.approx(d[1]) and d[0] < 1e-3 and d[2] == pytest.approx(1 - 0.01 / np.hypot(1, 0.01), abs=1e-4)


def test_copy_problems():
    brief = mk.AdBrief("Sneaker", "playful", "short")
    assert mk.copy_problems(brief, "meet your new favourite sneakers !") == []
    assert mk.copy_problems(brief, None) == ["unfinished"]
    assert mk.copy_problems(brief, "the best sneakers in the world .") == ["banned_word", "tone"]
    assert "category" in mk.copy_problems(brief, "meet your new favourite bag !")
    assert "length" in mk.copy_problems(brief, "meet your new favourite sneakers ! grab yours today !")


# ---------------------------------------------------------------- the copy grammar and the copy GPT
def test_grammar_copies_pass_their_own_checks():
    corpus = pc.make_corpus(per_brief=5, risky_share=0.0, seed=0)
    assert len(corpus) == 5 * 60 and corpus == pc.make_corpus(per_brief=5, risky_share=0.0, seed=0)
    for brief, text in corpus:
        c = pc.copy_checks(brief, text)
        assert c == {"finished": True, "category": True, "tone": True, "length": True, "banned": False}, (brief, text)


def test_risky_claims_are_caught_by_the_banned_words():
    brief = pc.CopyBrief("Coat", "premium", "long")
    text = pc.write_copy(brief, random.Random(0), risky_share=1.0)
    assert pc.copy_checks(brief, text)["banned"]
    for claim in pc.RISKY_CLAIMS:
        assert pc.copy_checks(brief, claim.format(noun="coat"))["banned"], claim


def test_tone_markers_are_unique_to_their_tone():
    for tone, markers in pc.TONE_MARKERS.items():
        assert markers
        for other, other_markers in pc.TONE_MARKERS.items():
            if other != tone:
                assert not set(markers) & set(other_markers)


def test_encode_corpus_masks_controls_and_padding():
    corpus = pc.make_corpus(per_brief=1, seed=0)
    vocab = pc.build_vocab(corpus)
    x, y = pc.encode_corpus(corpus, vocab, 40)
    assert x.shape == y.shape == (60, 40)
    assert (y[:, :3] == -100).all() and (x[:, 0] == 1).all()
    n = len(corpus[0][1].split())
    assert y[0, 3 + n - 1] != -100 and y[0, 3 + n] == 2 and (y[0, 3 + n + 1:] == -100).all()  # copy, <eos>, pad
    with pytest.raises(ValueError, match="block_size"):
        pc.encode_corpus(corpus, vocab, 8)
    with pytest.raises(ValueError, match="Unknown length"):
        pc.CopyBrief("Bag", "playful", "medium")


def test_generate_copy_and_report_on_a_tiny_gpt():
    corpus = pc.make_corpus(per_brief=1, seed=0)
    vocab = pc.build_vocab(corpus)
    torch.manual_seed(0)
    model = GPT(GPTConfig.tiny(vocab_size=len(vocab), block_size=20)).eval()
    briefs = pc.all_briefs()[:6]
    a = pc.generate_copy(model, vocab, briefs, generator=torch.Generator().manual_seed(0))
    b = pc.generate_copy(model, vocab, briefs, generator=torch.Generator().manual_seed(0))
    assert a == b and len(a) == 6 and all(t is None or isinstance(t, str) for t in a)
    rep = pc.copy_report(briefs, a, {t for _, t in corpus})
    assert set(rep) == {"finished", "category", "tone", "length", "banned", "all_ok", "novel"}
    assert all(0.0 <= v <= 1.0 for v in rep.values())
    with pytest.raises(ValueError, match="one copy per brief"):
        pc.copy_report(briefs, a[:2], set())


# ---------------------------------------------------------------- the A/B test
def test_simulated_click_rates():
    p = mk.simulated_click_rates([0.7, 0.8, 0.9, 0.99], seed=0)
    assert p.shape == (4,) and (p > 0).all() and (p < 1).all()
    np.testing.assert_allclose(p, mk.simulated_click_rates([0.7, 0.8, 0.9, 0.99], seed=0))
    no_noise = mk.simulated_click_rates([1.0, 2.0, 3.0], base=0.05, spread=0.01, noise=0.0)
    np.testing.assert_allclose(no_noise, 0.05 + 0.01 * np.array([-1.0, 0.0, 1.0]) * np.sqrt(1.5))
    with pytest.raises(ValueError, match="at least two"):
        mk.simulated_click_rates([0.9])


def test_uniform_allocation_matches_its_closed_form():
    p = np.array([0.03, 0.05, 0.06, 0.08])
    horizon, runs = 2000, 400
    regret = mk.bandit_regret(p, horizon, "uniform", n_runs=runs, seed=0)
    final = regret[:, -1]
    closed = mk.uniform_regret(p, horizon)
    assert closed == pytest.approx(horizon * (0.08 - 0.055))
    assert abs(final.mean() - closed) < 4 * final.std() / np.sqrt(runs)
    np.testing.assert_allclose(mk.uniform_regret(p, [1, 10]), [0.025, 0.25])


def test_thompson_sampling_beats_uniform_allocation():
    p = np.array([0.03, 0.05, 0.06, 0.08])
    ts = mk.bandit_regret(p, 3000, "thompson", n_runs=100, seed=0)[:, -1].mean()
    uniform = mk.uniform_regret(p, 3000)
    assert ts < 0.5 * uniform
    etc = mk.bandit_regret(p, 3000, "explore_commit", n_runs=50, seed=0, explore_per_arm=100)
    assert (np.diff(etc, axis=1) >= 0).all()  # regret never decreases
    with pytest.raises(ValueError, match="Unknown policy"):
        mk.bandit_regret(p, 10, "greedy")


def test_peeking_inflates_false_positives():
    once = mk.peeking_false_positive_rate(0.05, 1000, 1, n_runs=2000, seed=0)
    often = mk.peeking_false_positive_rate(0.05, 1000, 20, n_runs=2000, seed=0)
    assert 0.03 < once < 0.07 and often > 2 * once
    with pytest.raises(ValueError, match="n_looks"):
        mk.peeking_false_positive_rate(0.05, 10, 0)


# ---------------------------------------------------------------- the real thing, on tiny models
def test_real_campaign_runs_on_tiny_models(tmp_path):
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from aigc_course.apps import hub
    from aigc_course.diffusion.stable_diffusion import tiny_stable_diffusion

    brief = mk.AdBrief("Dress", "premium", "long")
    msgs = mk.copy_messages(brief)
    assert msgs[0]["role"] == "system" and "guaranteed" in msgs[0]["content"] and "dress" in msgs[1]["content"]
    pipe = tiny_stable_diffusion(tmp_path)
    lm, tok = hub.tiny_instruct_lm(seed=0)
    out = mk.real_campaign(brief, pipe, lm, tok, n_images=2, n_copies=3, num_steps=2, device="cpu")
    assert out["images"].shape[:2] == (2, 3) and 0 <= out["images"].min() and out["images"].max() <= 1
    assert len(out["copies"]) == 3 and len(out["problems"]) == 3 and "dress" in out["prompt"]


# ---------------------------------------------------------------- recipes and shipped weights
@needs_data
@pytest.mark.parametrize("name", ["fashion_diffusion", "fashion_cnn", "copy_gpt"])
def test_recipes_run_in_fast_mode(tmp_path, name):
    import importlib

    from aigc_course.pretrained import load_tensors
    from aigc_course.recipes import RECIPES

    assert RECIPES[name] == f"aigc_course.recipes.{name}"
    card = importlib.import_module(RECIPES[name]).train(out_dir=tmp_path, fast=True)
    assert card["weights_dtype"] == "float16" and "metrics" in card
    tensors, _ = load_tensors(tmp_path / f"{name}.safetensors")
    assert all(t.dtype == torch.float16 for t in tensors.values() if t.is_floating_point())


def test_shipped_weights_load_and_fit_the_budget():
    from aigc_course.pretrained import SHIPPED_DIR, load_pretrained, load_tokenizer

    total = sum((SHIPPED_DIR / f"{n}.safetensors").stat().st_size for n in ("fashion_diffusion", "fashion_cnn",
                                                                           "copy_gpt"))
    assert total < 4_000_000
    unet, card = load_pretrained("fashion_diffusion")
    assert unet.config.num_classes == 10 and card["schedule"]["num_steps"] == 1000
    clf, clf_card = load_pretrained("fashion_cnn")
    assert clf_card["metrics"]["test_accuracy"] > 0.85
    gpt, gpt_card = load_pretrained("copy_gpt")
    assert len(load_tokenizer("copy_gpt")) == gpt.config.vocab_size
