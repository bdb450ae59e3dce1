"""Tests of the class-conditional pixel Gaussian baseline (part 1)."""

from __future__ import annotations

import math

import pytest
import torch

from aigc_course.models import PixelGaussian, PixelGaussianConfig


def toy_data(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = (y.view(-1, 1, 1, 1).float() - 1) * 0.5 + 0.1 * torch.randn(n, 1, 4, 4, generator=g)
    return x, y


def cfg(K=1):
    return PixelGaussianConfig(n_classes=3, n_components=K, image_shape=(1, 4, 4), min_std=0.01)


def test_fit_k1_matches_class_mean_and_std():
    x, y = toy_data()
    m = PixelGaussian(cfg()).fit(x, y)
    torch.testing.assert_close(m.mu[2, 0], x[y == 2].mean(0))
    torch.testing.assert_close(m.sigma[1, 0], x[y == 1].std(0, unbiased=False))
    assert torch.allclose(m.log_pi, torch.zeros(3, 1))


def test_sample_shape_range_and_determinism():
    x, y = toy_data()
    m = PixelGaussian(cfg(K=2)).fit(x, y, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 2])
    s1 = m.sample(labels, generator=torch.Generator().manual_seed(1))
    s2 = m.sample(labels, generator=torch.Generator().manual_seed(1))
    assert s1.shape == (4, 1, 4, 4) and s1.min() >= -1 and s1.max() <= 1
    torch.testing.assert_close(s1, s2)
    # samples sit near their class mean: class 0 ~ -0.5, class 2 ~ +0.5
    assert s1[0].mean() < -0.3 and s1[3].mean() > 0.3
    assert torch.allclose(m.log_pi.exp().sum(1), torch.ones(3))


def test_temperature_zero_gives_a_component_mean():
    x, y = toy_data()
    m = PixelGaussian(cfg()).fit(x, y)
    s = m.sample(torch.tensor([1]), temperature=0.0)
    torch.testing.assert_close(s[0], m.mu[1, 0].clamp(-1, 1))


def test_log_prob_matches_normal_and_prefers_right_class():
    x, y = toy_data()
    m = PixelGaussian(cfg()).fit(x, y)
    ref = torch.distributions.Normal(m.mu[y, 0], m.sigma[y, 0]).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(m.log_prob(x, y), ref)
    wrong = (y + 1) % 3
    assert (m.log_prob(x, y) > m.log_prob(x, wrong)).all()
    assert math.isfinite(float(m.log_prob(x, y).mean()))


def test_bad_input_raises():
    x, y = toy_data()
    m = PixelGaussian(cfg())
    with pytest.raises(RuntimeError, match="fit"):
        m.sample(torch.tensor([0]))
    with pytest.raises(ValueError, match="shape"):
        m.fit(torch.zeros(5, 1, 3, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="Labels"):
        m.fit(x, y + 5)
    with pytest.raises(ValueError, match="fewer"):
        PixelGaussian(cfg(K=500)).fit(x, y)
