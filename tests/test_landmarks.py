"""Tests of the landmark table and its figures (part 1)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from aigc_course.concepts.landmarks import (  # noqa: E402
    KINDS,
    compute_figure,
    fit_doubling_time,
    landmarks,
    timeline_figure,
)


def test_records_sorted_and_valid():
    rows = landmarks()
    dates = [r.date for r in rows]
    assert dates == sorted(dates)
    names = [r.name for r in rows]
    assert len(set(names)) == len(names)
    for r in rows:
        assert 1 <= r.month <= 12 and r.kind in KINDS and r.reference
        assert r.params is None or r.params > 0
        assert r.train_flop is None or r.train_flop > 0
        assert (r.train_flop is None) == (r.flop_source is None)


def test_required_events_and_published_numbers():
    by_name = {r.name: r for r in landmarks()}
    for name in ["Turing test", "ELIZA", "LSTM", "word2vec", "VAE", "GAN", "Transformer", "BERT-Large",
                 "GPT-2", "GPT-3", "DDPM", "CLIP", "DALL-E", "Stable Diffusion", "ChatGPT", "GPT-4"]:
        assert name in by_name
    gpt3 = by_name["GPT-3"]
    assert gpt3.params == 175e9 and gpt3.train_flop == pytest.approx(3.14e23) and gpt3.flop_source == "paper"
    assert by_name["GPT-4"].params is None and by_name["GPT-4"].train_flop is None
    # the 6ND rule reproduces GPT-3's reported compute within 1%
    assert 6 * 175e9 * 300e9 == pytest.approx(gpt3.train_flop, rel=0.01)


def test_filters():
    assert all(r.kind == "image" for r in landmarks(kind="image"))
    assert all(r.train_flop for r in landmarks(with_flop=True))
    with pytest.raises(ValueError, match="Unknown kind"):
        landmarks(kind="smell")


def test_fit_recovers_known_doubling_time():
    rng = np.random.default_rng(0)
    years = np.linspace(2010, 2024, 30)
    flop = 1e18 * 2.0 ** ((years - 2010) * 12 / 6.0) * 2.0 ** rng.normal(0, 0.3, size=30)
    fit = fit_doubling_time(years, flop)
    assert fit.doubling_months == pytest.approx(6.0, rel=0.05)
    assert fit.n == 30
    exact = fit_doubling_time([2000, 2001], [1.0, 4.0])
    assert exact.doubling_months == pytest.approx(6.0)
    assert abs(fit_doubling_time([2000, 2001], [3.0, 3.0]).doubling_months) > 1e6  # flat: no growth


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="positive"):
        fit_doubling_time([2000, 2001], [1.0, 0.0])
    with pytest.raises(ValueError, match="length"):
        fit_doubling_time([2000], [1.0])
    with pytest.raises(ValueError, match="equal"):
        fit_doubling_time([2000, 2000], [1.0, 2.0])


def test_figures_return_axes():
    ax = timeline_figure()
    assert isinstance(ax, plt.Axes)
    ax2, fit = compute_figure(threshold=1e25)
    assert isinstance(ax2, plt.Axes) and ax2.get_yscale() == "log"
    assert 0 < fit.doubling_months < 24 and fit.n == len(landmarks(with_flop=True))
    plt.close("all")
