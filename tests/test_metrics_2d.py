"""Tests for the sample-quality metrics of notebook 2.3 (aigc_course.metrics.toy2d)."""

from __future__ import annotations

import math

import pytest
import torch

from aigc_course.metrics.toy2d import eight_gaussian_centres, kde_nll, mmd_rbf, mode_stats


def gauss(n, shift=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) + shift


def test_mmd_zero_for_identical_and_grows_with_shift():
    x = gauss(300)
    assert mmd_rbf(x, x) == pytest.approx(0.0, abs=1e-12)
    same = mmd_rbf(x, gauss(300, seed=1))
    small = mmd_rbf(x, gauss(300, 0.5, seed=1))
    large = mmd_rbf(x, gauss(300, 2.0, seed=1))
    assert 0 <= same < small < large
    assert mmd_rbf(x, gauss(300, 0.5, seed=1)) == pytest.approx(mmd_rbf(gauss(300, 0.5, seed=1), x))


def test_kde_nll_matches_a_single_gaussian_and_punishes_missing_data():
    # one sample at the origin: the KDE is N(0, h^2 I), so the NLL at the origin is log(2 pi h^2)
    h = 0.5
    assert kde_nll(torch.zeros(1, 2), torch.zeros(1, 2), bandwidth=h) == pytest.approx(math.log(2 * math.pi * h * h))
    data = gauss(400, seed=2)
    assert kde_nll(gauss(400), data) < kde_nll(gauss(400, 3.0), data)


def test_mode_stats_counts_modes_and_precision():
    centres = eight_gaussian_centres()
    assert centres.shape == (8, 2)
    torch.testing.assert_close(centres.norm(dim=1), torch.full((8,), 2.0, dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    all_modes = centres[torch.arange(800) % 8].float() + 0.15 * torch.randn(800, 2, generator=g)
    stats = mode_stats(all_modes, centres)
    assert stats["modes"] == 8 and stats["high_quality"] > 0.95
    assert sum(stats["per_mode"]) == pytest.approx(stats["high_quality"])
    collapsed = centres[torch.arange(800) % 2].float() + 0.15 * torch.randn(800, 2, generator=g)
    assert mode_stats(collapsed, centres)["modes"] == 2
    assert mode_stats(torch.zeros(100, 2), centres)["high_quality"] == 0.0


def test_bad_input():
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        mmd_rbf(torch.zeros(5), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="same dimension"):
        mmd_rbf(torch.zeros(5, 2), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="bandwidth"):
        kde_nll(torch.zeros(5, 2), torch.zeros(5, 2), bandwidth=0)
    with pytest.raises(ValueError, match="non-empty"):
        mode_stats(torch.zeros(0, 2), eight_gaussian_centres())
