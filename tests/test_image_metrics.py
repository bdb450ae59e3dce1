"""Image-generator metrics (chapter 5.13): closed forms, references, bias, errors."""

import math

import numpy as np
import pytest
import torch

from aigc_course.metrics import image as im
from aigc_course.models import CNNClassifier


def gaussian(n, d, seed, mean=0.0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * scale + mean


def test_fid_of_identical_sets_is_zero():
    x = gaussian(500, 16, 0)
    assert im.fid(x, x) == pytest.approx(0.0, abs=1e-8)


def test_fid_closed_form_for_diagonal_gaussians():
    mu1, mu2 = torch.tensor([0.0, 1.0, -2.0]).double(), torch.tensor([1.0, 1.0, 0.5]).double()
    s1, s2 = torch.tensor([1.0, 4.0, 0.25]).double(), torch.tensor([2.0, 1.0, 0.25]).double()
    expected = ((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * (s1 * s2).sqrt()).sum()
    got = im.frechet_distance_gaussians(mu1, torch.diag(s1), mu2, torch.diag(s2))
    assert got == pytest.approx(expected.item(), rel=1e-10)


def test_fid_matches_numpy_eig_reference_for_full_covariances():
    rng = np.random.default_rng(0)
    d = 6
    A, B = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    S1, S2 = A @ A.T + 0.1 * np.eye(d), B @ B.T + 0.1 * np.eye(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    # brute force: square root of the NON-symmetric S1 S2 through its eigendecomposition
    lam, V = np.linalg.eig(S1 @ S2)
    sqrt_prod = (V @ np.diag(np.sqrt(lam.astype(complex))) @ np.linalg.inv(V)).real
    assert np.allclose(sqrt_prod @ sqrt_prod, S1 @ S2, atol=1e-8)
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(S1 + S2 - 2 * sqrt_prod)
    got = im.frechet_distance_gaussians(torch.from_numpy(mu1), torch.from_numpy(S1),
                                        torch.from_numpy(mu2), torch.from_numpy(S2))
    assert got == pytest.approx(ref, rel=1e-9)


def test_fid_from_samples_approaches_population_value():
    a, b = gaussian(20000, 4, 1), gaussian(20000, 4, 2, mean=1.0, scale=2.0)
    expected = 4 * 1.0 + 4 * (1 + 4 - 2 * 2)  # ||mu||^2 + sum (s1 + s2 - 2 sqrt(s1 s2))
    assert im.fid(a, b) == pytest.approx(expected, rel=0.03)


def test_fid_is_biased_upwards_at_small_n():
    big = [im.fid(gaussian(2000, 16, s), gaussian(2000, 16, 100 + s)) for s in range(3)]
    small = [im.fid(gaussian(100, 16, s), gaussian(100, 16, 100 + s)) for s in range(3)]
    assert min(small) > max(big) > 0


def test_kid_is_unbiased_for_the_same_distribution_and_positive_for_a_shift():
    same = [im.kid(gaussian(200, 8, s), gaussian(200, 8, 50 + s), subsets=20, subset_size=100, seed=s)[0]
            for s in range(10)]
    assert abs(np.mean(same)) < 3 * np.std(same) / math.sqrt(len(same)) + 1e-3
    assert min(same) < 0 < max(same)  # an unbiased estimate of 0 takes both signs
    shifted, std = im.kid(gaussian(200, 8, 0), gaussian(200, 8, 1, mean=0.5), subsets=20, subset_size=100)
    assert shifted > 3 * std > 0 and shifted > 20 * abs(np.mean(same))


def test_mmd2_unbiased_matches_a_loop():
    x, y = gaussian(5, 3, 0), gaussian(4, 3, 1)

    def k(a, b):
        return (float(a @ b) / 3 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / 20
    yy = sum(k(y[i], y[j]) for i in range(4) for j in range(4) if i != j) / 12
    xy = sum(k(x[i], y[j]) for i in range(5) for j in range(4)) / 20
    assert im.mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_kid_is_deterministic_under_a_seed():
    a, b = gaussian(300, 8, 0), gaussian(300, 8, 1)
    assert im.kid(a, b, subsets=5, subset_size=50, seed=3) == im.kid(a, b, subsets=5, subset_size=50, seed=3)


def test_inception_score_bounds():
    K = 10
    confident = torch.eye(K).repeat(20, 1)  # (200, 10) one-hot, evenly spread
    assert im.inception_score(confident, splits=1)[0] == pytest.approx(K, rel=1e-6)
    assert im.inception_score(confident * 50.0, splits=2)[0] == pytest.approx(K, rel=1e-6)  # logits
    same = torch.randn(1, K).repeat(100, 1)  # one prediction for every image
    assert im.inception_score(same, splits=1)[0] == pytest.approx(1.0, abs=1e-9)
    mean, std = im.inception_score(torch.randn(500, K) * 3, splits=5)
    assert 1 <= mean <= K and std >= 0


def test_precision_recall_identical_and_disjoint():
    x = gaussian(300, 5, 0)
    assert tuple(im.precision_recall(x, x)) == (1.0, 1.0)
    far = gaussian(300, 5, 1, mean=100.0)
    pr = im.precision_recall(x, far)
    assert pr.precision == 0.0 and pr.recall == 0.0


def test_knn_radius_is_the_distance_to_the_kth_other_point():
    x = gaussian(30, 3, 0)
    d = torch.cdist(x, x).sort(dim=1).values  # column 0: the point itself
    torch.testing.assert_close(im.knn_radius(x, k=3, chunk=7), d[:, 3])


def test_precision_recall_sees_mode_collapse():
    real = torch.cat([gaussian(200, 2, 0, mean=-5.0), gaussian(200, 2, 1, mean=5.0)])
    collapsed = gaussian(400, 2, 2, mean=5.0)  # only one of the two modes
    pr = im.precision_recall(real, collapsed)
    assert pr.precision > 0.9 and pr.recall < 0.6


def test_clip_score():
    e = torch.randn(4, 8)
    assert im.clip_score(e, e) == pytest.approx(100.0)
    assert im.clip_score(e, -e) == 0.0  # negative cosines are clamped per pair
    assert im.clip_score(e, 3 * e, w=2.5) == pytest.approx(2.5)


def test_features_classifier_accuracy_and_score_samples_shapes():
    torch.manual_seed(0)
    net = CNNClassifier().eval()
    x = torch.rand(12, 1, 28, 28) * 2 - 1
    f, logits = im.features_and_logits(x, net, batch_size=5)
    assert f.shape == (12, 64) and logits.shape == (12, 10)
    torch.testing.assert_close(f, net.features(x).detach())
    torch.testing.assert_close(logits, net(x).detach())  # eval mode: dropout is off
    acc = im.classifier_accuracy(x, logits.argmax(1), net)
    assert acc == 1.0
    row = im.score_samples(x, f, net, labels=logits.argmax(1), kid_subsets=3, is_splits=2)
    assert set(row) == {"fid", "kid", "kid_std", "is", "precision", "recall", "accuracy"}
    assert row["fid"] == pytest.approx(0.0, abs=1e-6) and row["precision"] == 1.0


def test_bad_inputs_raise_clear_errors():
    net = CNNClassifier().eval()
    with pytest.raises(ValueError, match="at least 2"):
        im.fid(gaussian(1, 4, 0), gaussian(10, 4, 1))
    with pytest.raises(ValueError, match="same network"):
        im.fid(gaussian(10, 4, 0), gaussian(10, 5, 1))
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        im.kid(torch.randn(10), torch.randn(10, 4))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        im.features(torch.rand(4, 1, 28, 28), net)
    with pytest.raises(ValueError, match="28, 28"):
        im.features(torch.randn(4, 1, 32, 32), net)
    with pytest.raises(ValueError, match="splits"):
        im.inception_score(torch.randn(5, 10), splits=6)
    with pytest.raises(ValueError, match="paired"):
        im.clip_score(torch.randn(3, 8), torch.randn(4, 8))
    with pytest.raises(ValueError, match="labels"):
        im.classifier_accuracy(torch.randn(4, 1, 28, 28), torch.zeros(3), net)
