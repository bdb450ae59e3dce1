"""Chapter 6.5: the tabular VAE, the copula baseline, and the utility, fidelity, privacy and
number checks, each on a case whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aigc_course.apps import tabular as tb
from aigc_course.models import ARCHS, TabularVAE, TabularVAEConfig, build_model


def gaussian_table(n, seed, d=4, rho=0.6):
    rng = np.random.default_rng(seed)
    R = np.full((d, d), rho) + (1 - rho) * np.eye(d)
    return rng.standard_normal((n, d)) @ np.linalg.cholesky(R).T


# ---- the model ------------------------------------------------------------------------------

def test_tabular_vae_shapes_loss_and_gradients():
    cfg = TabularVAEConfig.tiny(n_continuous=3, categories=(2, 3))
    model = TabularVAE(cfg)
    x_cont, x_cat = torch.randn(5, 3), torch.tensor([[0, 2], [1, 0], [1, 1], [0, 0], [1, 2]])
    out = model(x_cont, x_cat)
    assert out["mu"].shape == (5, cfg.latent_dim) and out["loss"].dim() == 0
    torch.testing.assert_close(out["loss"], out["rec_cont"] + out["rec_cat"] + cfg.beta * out["kl"])
    out["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.one_hot_row(x_cont, x_cat).shape == (5, 3 + 2 + 3)


def test_tabular_vae_sampling_is_seeded_and_in_range():
    model = TabularVAE(TabularVAEConfig.tiny(n_continuous=2, categories=(3,)))
    a = model.sample(50, generator=torch.Generator().manual_seed(0))
    b = model.sample(50, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a[0], b[0])
    assert torch.equal(a[1], b[1]) and a[1].dtype == torch.long
    assert a[0].shape == (50, 2) and a[1].shape == (50, 1) and 0 <= int(a[1].min()) and int(a[1].max()) < 3
    mean_only, _ = model.sample(4, generator=torch.Generator().manual_seed(0), noise=False)
    assert mean_only.shape == (4, 2)


def test_tabular_vae_is_registered_and_rebuilds_from_its_config():
    assert "tabular_vae" in ARCHS
    model = TabularVAE(TabularVAEConfig.tiny())
    again = build_model("tabular_vae", model.config_dict())
    assert again.config == model.config


def test_tabular_vae_rejects_bad_input():
    model = TabularVAE(TabularVAEConfig.tiny(n_continuous=2, categories=(2,)))
    with pytest.raises(ValueError, match="x_cont"):
        model(torch.randn(3, 5), torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        model(torch.randn(3, 2), torch.zeros(3, 1))
    with pytest.raises(ValueError, match=r"ids in \[0, 2\)"):
        model(torch.randn(3, 2), torch.full((3, 1), 2))
    with pytest.raises(ValueError, match="2 classes"):
        TabularVAEConfig(n_continuous=2, categories=(1,))
    with pytest.raises(ValueError, match="positive"):
        model.sample(0)


# ---- generators -----------------------------------------------------------------------------

def test_normal_scores_invert_on_the_fitted_values_and_are_standard_normal():
    X = np.random.default_rng(0).exponential(size=(200, 3))
    ns = tb.NormalScores().fit(X)
    Z = ns.to_normal(X)
    np.testing.assert_allclose(ns.from_normal(Z), X, rtol=1e-12)
    assert abs(Z.mean()) < 0.01 and abs(Z.std() - 1) < 0.05
    far = ns.from_normal(np.full((1, 3), 8.0))
    np.testing.assert_allclose(far[0], X.max(0))  # quantiles never leave the fitted range


def test_gaussian_copula_keeps_class_shares_and_correlation():
    X = gaussian_table(2000, 0, rho=0.6)
    y = (np.random.default_rng(1).random(2000) < 0.3).astype(int)
    Xs, ys = tb.GaussianCopula().fit(X, y).sample(4000, seed=0)
    assert Xs.shape == (4000, 4) and set(np.unique(ys)) == {0, 1}
    assert abs(ys.mean() - y.mean()) < 0.03
    assert tb.correlation_gap(Xs, X)[1] < 0.05
    assert tb.ks_per_column(Xs, X).max() < 0.06
    with pytest.raises(ValueError, match="fewer than 3 rows"):
        tb.GaussianCopula().fit(X[:10], np.r_[np.zeros(9), 1])


def test_fit_tabular_vae_runs_evaluates_and_repeats_under_a_seed():
    X = gaussian_table(100, 0)
    y = (X[:, 0] > 0).astype(int)
    calls = []
    a = tb.fit_tabular_vae(X, y, steps=20, seed=3, hidden=16, latent_dim=2,
                           eval_fn=lambda v: calls.append(1) or {"n": len(v.history.loss)}, eval_every=10)
    b = tb.fit_tabular_vae(X, y, steps=20, seed=3, hidden=16, latent_dim=2)
    assert len(calls) == 2 and a.history.evals[-1]["n"] == 20
    Xa, ya = tb.sample_tabular_vae(a, 30, seed=1)
    Xb, yb = tb.sample_tabular_vae(b, 30, seed=1)
    np.testing.assert_allclose(Xa, Xb)
    assert Xa.shape == (30, 4) and np.array_equal(ya, yb)


# ---- utility and fidelity -------------------------------------------------------------------

def test_tstr_on_the_real_data_is_high_and_a_single_class_is_refused():
    X, y, names = tb.load_breast_cancer_table()
    assert X.shape == (569, 30) and len(names) == 30 and set(np.unique(y)) == {0, 1}
    train, test = tb.split_rows(y, holdout=0.5, seed=0)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 569
    assert tb.tstr_auc(X[train], y[train], X[test], y[test]) > 0.95
    with pytest.raises(ValueError, match="single class"):
        tb.tstr_auc(X[train], np.zeros(len(train)), X[test], y[test])


def test_ks_statistic_matches_scipy_and_known_cases():
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=300), rng.normal(0.3, 1, size=200)
    assert tb.ks_statistic(a, b) == pytest.approx(ks_2samp(a, b).statistic)
    assert tb.ks_statistic(a, a) == 0.0
    assert tb.ks_statistic(np.arange(5.0), np.arange(5.0) + 10) == 1.0
    with pytest.raises(ValueError, match="columns"):
        tb.ks_per_column(np.zeros((3, 2)), np.zeros((3, 3)))


def test_correlation_gap_is_zero_for_the_same_table():
    X = gaussian_table(100, 0)
    gap, mean = tb.correlation_gap(X, X)
    assert gap.shape == (4, 4) and mean == pytest.approx(0.0, abs=1e-12)


# ---- privacy --------------------------------------------------------------------------------

def test_a_copier_has_dcr_zero_and_a_high_attack_auc():
    train, holdout = gaussian_table(200, 0), gaussian_table(200, 1)
    copies, _ = tb.copier(train, np.zeros(200), n=4000, noise=0.0, seed=0)  # covers every row
    assert np.allclose(tb.dcr(copies, train), 0.0)
    assert tb.membership_auc(copies, train, holdout) > 0.99
    noisy, _ = tb.copier(train, np.zeros(200), n=4000, noise=3.0, seed=0)
    assert tb.membership_auc(noisy, train, holdout) < tb.membership_auc(copies, train, holdout)


def test_independent_samples_give_attack_auc_near_one_half():
    aucs = [tb.membership_auc(gaussian_table(200, 3 * s), gaussian_table(100, 3 * s + 1), gaussian_table(100, 3 * s + 2))
            for s in range(30)]
    assert abs(np.mean(aucs) - 0.5) < 0.02
    assert np.std(aucs) < 0.08


def test_dcr_checks_its_scale():
    with pytest.raises(ValueError, match="constant column"):
        tb.dcr(np.zeros((3, 2)), np.c_[np.arange(3.0), np.ones(3)])
    with pytest.raises(ValueError, match="NaN"):
        tb.dcr(np.array([[np.nan, 1.0], [0.0, 1.0]]), np.eye(2))


# ---- the number check -----------------------------------------------------------------------

RECORD = {"mean radius": 14.127, "mean area": 654.89, "worst concave points": 0.1142, "diagnosis": "benign"}


def test_numbers_in_reads_decimals_thousands_and_skips_words():
    assert tb.numbers_in("radius 14.13, area 1,654.9 and COVID19 at 3.") == ["14.13", "1,654.9", "3"]
    with pytest.raises(TypeError):
        tb.numbers_in(3.0)


@pytest.mark.parametrize("text, flagged", [
    ("Your mean radius is 14.13 and the mean area is about 655.", []),
    ("The radius, 14.1, is in the usual range.", []),
    ("The radius is 14 units; concave points 0.11.", []),
    ("The radius is 14.3 and 95% of such lumps are harmless.", ["14.3", "95"]),
    ("Come back in 6 months.", ["6"]),
    ("No numbers at all.", []),
])
def test_unsupported_numbers_on_hand_written_texts(text, flagged):
    assert tb.unsupported_numbers(text, RECORD) == flagged


def test_unsupported_numbers_allows_listed_numbers():
    assert tb.unsupported_numbers("Call 911.", RECORD, allowed=(911,)) == []


def test_patient_guide_messages_hold_every_value():
    messages = tb.patient_guide_messages(RECORD)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "14.13" in messages[1]["content"] and "benign" in messages[1]["content"]
    with pytest.raises(ValueError, match="empty"):
        tb.patient_guide_messages({})


def test_checked_guides_run_on_the_tiny_instruct_model():
    pytest.importorskip("transformers")
    from aigc_course.apps import hub

    model, tok = hub.tiny_instruct_lm(seed=0)
    guides = tb.checked_guides(model, tok, RECORD, n=3, max_new_tokens=24, seed=0)
    assert len(guides) == 3
    for g in guides:
        assert isinstance(g["text"], str)
        assert g["unsupported"] == tb.unsupported_numbers(g["text"], RECORD)
        assert g["passes"] == (not g["unsupported"])
