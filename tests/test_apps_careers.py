"""Chapter 6.6: the cost model of the three deployment modes and the error-rate helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from aigc_course.apps import careers
from aigc_course.apps.careers import CostModel

# A case worked by hand: V = 10, C_err = 90, C_rev = 2, r = 0.8, C_fix = 5, C_human = 6.
# a = V + C_err = 100; k = 0.2 * 100 + 0.8 * 5 = 24; EV_human = 10 - 6 = 4.
HAND = CostModel(value=10, cost_error=90, cost_review=2, review_recall=0.8, cost_fix=5, cost_human=6)


def test_expected_values_by_hand():
    # at e = 0.05: automate 10 - 100 * 0.05 = 5; review 10 - 2 - 24 * 0.05 = 6.8; human 4
    assert careers.expected_value(HAND, 0.05, "automate") == pytest.approx(5.0)
    assert careers.expected_value(HAND, 0.05, "review") == pytest.approx(6.8)
    assert careers.expected_value(HAND, 0.05, "human") == pytest.approx(4.0)
    # the review formula written term by term: (1-e)V + e r (V - C_fix) - e (1-r) C_err - C_rev
    e = 0.05
    by_terms = (1 - e) * 10 + e * 0.8 * (10 - 5) - e * 0.2 * 90 - 2
    assert careers.expected_value(HAND, e, "review") == pytest.approx(by_terms)
    values = careers.expected_value(HAND, np.array([0.0, 1.0]), "automate")
    np.testing.assert_allclose(values, [10.0, -90.0])


def test_break_even_by_hand_and_at_the_crossings():
    be = careers.break_even(HAND)
    assert be["automate_vs_human"] == pytest.approx(6 / 100)  # (10 - 4) / 100
    assert be["automate_vs_review"] == pytest.approx(2 / 76)  # C_rev / (r (V + C_err - C_fix)) = 2 / (0.8 * 95)
    assert be["review_vs_human"] == pytest.approx(4 / 24)  # (10 - 2 - 4) / 24
    for name, e in be.items():
        m1, m2 = name.split("_vs_")
        assert careers.expected_value(HAND, e, m1) == pytest.approx(careers.expected_value(HAND, e, m2))


def test_regions_match_a_dense_grid():
    regs = careers.regions(HAND)
    assert [r[0] for r in regs] == ["automate", "review", "human"]
    assert regs[0][2] == pytest.approx(2 / 76) and regs[1][2] == pytest.approx(4 / 24)
    rng = np.random.default_rng(0)
    grid = np.linspace(0.0005, 0.9995, 400)
    for _ in range(20):  # random cost models: the regions agree with the argmax on a grid
        c = CostModel(*rng.uniform(0, 10, 3), rng.uniform(0, 1), *rng.uniform(0, 10, 2))
        regs = careers.regions(c)
        assert regs[0][1] == 0.0 and regs[-1][2] == 1.0
        assert all(a[2] == b[1] for a, b in zip(regs[:-1], regs[1:]))  # contiguous
        ev = {m: careers.expected_value(c, grid, m) for m in careers.MODES}  # each (400,)
        best = np.max(np.stack(list(ev.values())), axis=0)
        for m, lo, hi in regs:
            inside = (grid >= lo) & (grid <= hi)
            np.testing.assert_allclose(ev[m][inside], best[inside], atol=1e-9)


def test_best_mode_and_a_person_who_errs():
    assert [careers.best_mode(HAND, e) for e in (0.01, 0.1, 0.5)] == ["automate", "review", "human"]
    # a person who errs 2% of the time: EV_human = 0.98 * 10 - 0.02 * 90 - 6 = 2.0
    sloppy = CostModel(10, 90, 2, 0.8, 5, 6, human_error=0.02)
    assert sloppy.value_human == pytest.approx(2.0)
    assert careers.break_even(sloppy)["automate_vs_human"] == pytest.approx(8 / 100)
    sims = [careers.simulate_deployment([False] * 1000, sloppy, "human", seed=s) for s in range(50)]
    assert np.mean(sims) == pytest.approx(2.0, abs=0.1)


def test_review_never_wins_without_recall():
    c = CostModel(value=1, cost_error=5, cost_review=0.5, review_recall=0.0, cost_fix=0.1, cost_human=3)
    assert careers.break_even(c)["automate_vs_review"] == math.inf
    assert "review" not in [r[0] for r in careers.regions(c)]


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="review_recall"):
        CostModel(1, 1, 1, 1.5, 1, 1)
    with pytest.raises(ValueError, match="cost_error"):
        CostModel(1, -1, 1, 0.5, 1, 1)
    with pytest.raises(ValueError, match="not a percentage"):
        careers.expected_value(HAND, 5.0, "automate")
    with pytest.raises(ValueError, match="Unknown mode"):
        careers.expected_value(HAND, 0.1, "robot")
    with pytest.raises(ValueError, match="0 <= k <= n"):
        careers.wilson_interval(5, 3)
    with pytest.raises(ValueError, match="at least one"):
        careers.error_rate([], "t", "c")


def test_wilson_interval_known_values():
    lo, hi = careers.wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1.96**2 / (10 + 1.96**2))  # 0.2775: not empty at k = 0
    lo, hi = careers.wilson_interval(5, 10)
    assert (lo, hi) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    r = careers.error_rate([True, False, False, False], "toy", "flag")
    assert r.errors == 1 and r.n == 4 and r.rate == 0.25 and r.low < 0.25 < r.high


def test_decide_and_robustness():
    narrow = careers.ErrorRate("t", "c", 10, 1000, 0.005, 0.018)  # inside the automate region (< 0.026)
    d = careers.decide(HAND, narrow)
    assert d.mode == "automate" and d.robust
    wide = careers.ErrorRate("t", "c", 1, 20, 0.009, 0.236)  # straddles two crossings
    d = careers.decide(HAND, wide)
    assert d.mode == "review" and not d.robust and d.mode_high == "human"


def test_simulated_deployment_matches_the_closed_form():
    flags = [True] * 50 + [False] * 950
    e = 0.05
    for mode in ("automate", "human"):  # no randomness when e_h = 0
        assert careers.simulate_deployment(flags, HAND, mode) == pytest.approx(careers.expected_value(HAND, e, mode))
    sims = [careers.simulate_deployment(flags, HAND, "review", seed=s) for s in range(200)]
    assert np.mean(sims) == pytest.approx(careers.expected_value(HAND, e, "review"), abs=0.05)
    assert careers.simulate_deployment(flags, HAND, "review", seed=3) == careers.simulate_deployment(
        flags, HAND, "review", seed=3)


def test_translation_errors_on_a_tiny_model():
    from aigc_course.data.text import SentencePair
    from aigc_course.models import Seq2Seq, Seq2SeqConfig
    from aigc_course.text.vocab import Vocab, tokenize_en, tokenize_zh

    pairs = [SentencePair("I like tea.", "我喜欢茶。", ""), SentencePair("Tom runs.", "汤姆跑。", "")]
    src = Vocab.build([tokenize_en(p.en) for p in pairs], "en", min_freq=1)
    tgt = Vocab.build([tokenize_zh(p.zh) for p in pairs], "zh", min_freq=1)
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(src_vocab=src.vocab_size, tgt_vocab=tgt.vocab_size, emb=8, hidden=16)).eval()
    j = careers.translation_errors(model, pairs, src, tgt, threshold=30.0)
    assert len(j.outputs) == 2 and all(isinstance(h, str) for h in j.outputs)
    assert j.errors == [s < 30.0 for s in j.scores]
    assert careers.translation_errors(model, pairs, src, tgt, threshold=101.0).errors == [True, True]


def test_poem_form_errors_on_a_tiny_model():
    from aigc_course.models import GPT, GPTConfig
    from aigc_course.text.poems import build_tokenizer

    tok = build_tokenizer("春風吹山月，白雲入水流。\n\n" * 3, min_count=1)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    j = careers.poem_form_errors(model, tok, n=2, max_chars=12, seed=0)
    assert len(j.outputs) == 2 and len(j.errors) == 2
    assert j.errors == careers.poem_form_errors(model, tok, n=2, max_chars=12, seed=0).errors  # seeded
    with pytest.raises(ValueError, match="n must be"):
        careers.poem_form_errors(model, tok, n=0)


def test_caption_label_errors_on_a_tiny_model():
    from aigc_course.models.captioner import Captioner, CaptionerConfig
    from aigc_course.text.captions import caption_vocab

    vocab = caption_vocab()
    torch.manual_seed(0)
    model = Captioner(CaptionerConfig(vocab_size=vocab.vocab_size, channels=(8, 8, 8), emb=8, hidden=16,
                                      attn_dim=8)).eval()
    images = torch.rand(3, 1, 28, 28) * 2 - 1
    j = careers.caption_label_errors(model, vocab, images, torch.tensor([1, 2, 3]))
    assert len(j.outputs) == 3 and all(isinstance(e, bool) for e in j.errors)
    with pytest.raises(ValueError, match="as many labels"):
        careers.caption_label_errors(model, vocab, images, torch.tensor([1]))


def test_prompt_errors_on_a_tiny_pipeline():
    from aigc_course.diffusion import NoiseSchedule, ScheduleConfig
    from aigc_course.diffusion.pipeline import TextToImage
    from aigc_course.models import (
        CNNClassifier,
        CNNConfig,
        MiniCLIP,
        MiniCLIPConfig,
        UNet,
        UNetConfig,
    )
    from aigc_course.text.prompts import build_vocab

    torch.manual_seed(0)
    vocab = build_vocab()
    clip = MiniCLIP(MiniCLIPConfig(vocab_size=vocab.vocab_size, embed_dim=16, image_channels=(8, 8, 16),
                                   text_width=16, text_layers=1, text_heads=2)).eval()
    unet = UNet(UNetConfig(base=8, time_dim=32, cond_dim=16)).eval()
    pipe = TextToImage(clip, vocab, unet, NoiseSchedule(ScheduleConfig(num_steps=100)))
    classifier = CNNClassifier(CNNConfig()).eval()
    j, images = careers.prompt_errors(pipe, classifier, per_digit=1, num_steps=2)
    assert images.shape == (10, 1, 28, 28) and len(j.errors) == 10
    assert j.errors == [r != d for r, d in zip(j.scores, range(10))]
