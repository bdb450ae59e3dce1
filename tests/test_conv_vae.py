"""Tests for aigc_course.models.conv_vae, aigc_course.maths.vae and the conv_vae_mnist recipe."""

from __future__ import annotations

import math

import pytest
import torch

from aigc_course.maths.vae import LinearGaussian, gaussian_kl_full
from aigc_course.models import ConvVAE, ConvVAEConfig, build_model, gaussian_kl
from aigc_course.models.conv_vae import binarize


def _model(seed: int = 0, **kw) -> ConvVAE:
    torch.manual_seed(seed)
    cfg = dict(latent_dim=4, channels=8)
    cfg.update(kw)
    return ConvVAE(ConvVAEConfig(**cfg))


def _images(n: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return binarize(torch.rand(n, 1, 28, 28, generator=g) ** 3, generator=g)


def test_shapes_and_helpers():
    m, x = _model(), _images()
    mu, logvar = m.encode(x)
    assert mu.shape == logvar.shape == (6, 4)
    logits, mu2, _ = m(x)
    assert logits.shape == x.shape and torch.equal(mu, mu2)
    probs = m.decode(mu).detach()
    assert probs.shape == x.shape and 0 <= float(probs.min()) <= float(probs.max()) <= 1
    assert m.sample(5).shape == (5, 1, 28, 28)
    s = m.sample(5, binary=True, generator=torch.Generator().manual_seed(0))
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    assert m.reconstruct(x).shape == x.shape
    path = m.interpolate(x[0], x[1], steps=7)
    assert path.shape == (7, 1, 28, 28)
    torch.testing.assert_close(path[0], m.reconstruct(x[:1])[0])
    torch.testing.assert_close(path[-1], m.reconstruct(x[1:2])[0])
    assert m.iwae_nll(x, k=3).shape == (6,)


def test_loss_parts_and_gradients():
    m, x = _model(beta=2.0), _images()
    g = torch.Generator().manual_seed(1)
    out = m.loss(x, generator=g)
    torch.testing.assert_close(out["loss"], out["rec"] + 2.0 * out["kl"])
    torch.testing.assert_close(out["neg_elbo"], out["rec"] + out["kl"])
    assert float(out["kl"].detach()) >= 0 and float(out["rec"].detach()) > 0
    # the same noise gives the same reconstruction term whatever beta is
    out1 = m.loss(x, beta=1.0, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out1["rec"], out["rec"])
    torch.testing.assert_close(out1["loss"], out["neg_elbo"])
    out["loss"].backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_reconstruction_is_bernoulli_nll():
    m, x = _model(), _images(3)
    mu, logvar = m.encode(x)
    z = m.reparameterize(mu, logvar, eps=torch.zeros_like(mu))
    p = m.decode(z).clamp(1e-6, 1 - 1e-6)
    manual = -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)
    logits = m.decode_logits(z)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    torch.testing.assert_close(bce, manual, rtol=1e-4, atol=1e-3)


def test_gaussian_kl_closed_form_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.tensor([0.7, -1.2, 0.0]), torch.tensor([-0.5, 0.4, -2.0])
    closed = gaussian_kl(mu, logvar).sum()
    z = mu + torch.exp(0.5 * logvar) * torch.randn(200_000, 3, generator=g)
    log_q = -0.5 * (((z - mu) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(1)
    log_p = -0.5 * (z**2 + math.log(2 * math.pi)).sum(1)
    torch.testing.assert_close((log_q - log_p).mean(), closed, rtol=0.02, atol=0.01)
    # the diagonal formula agrees with the full-covariance one
    full = gaussian_kl_full(mu.double(), torch.diag(logvar.exp()).double(), torch.zeros(3).double(),
                            torch.eye(3).double())
    torch.testing.assert_close(full.float(), closed)


def test_elbo_identity_on_linear_gaussian():
    g = torch.Generator().manual_seed(0)
    lg = LinearGaussian(torch.randn(5, 2, generator=g, dtype=torch.float64),
                        torch.randn(5, generator=g, dtype=torch.float64), 0.7)
    x = lg.sample(1, generator=g)[0]
    m_post, S_post = lg.posterior(x)
    log_px = lg.log_evidence(x)
    torch.testing.assert_close(lg.elbo(x, m_post, S_post), log_px)  # exact posterior: tight bound
    m, S = torch.tensor([0.3, -0.2], dtype=torch.float64), torch.diag(torch.tensor([0.5, 0.2], dtype=torch.float64))
    gap = gaussian_kl_full(m, S, m_post, S_post)
    torch.testing.assert_close(lg.elbo(x, m, S), log_px - gap)
    assert float(gap) > 0
    torch.testing.assert_close(lg.elbo_mc(x, m, S, n=100_000, generator=g), lg.elbo(x, m, S), rtol=0.01, atol=0.02)


def test_iwae_bound_tightens_and_k1_is_elbo():
    m, x = _model(), _images(4)
    # K = 1: log p(x|z) + log p(z) - log q(z|x) with one z; its average over z is the ELBO
    k1 = torch.stack([m.iwae_nll(x, k=1, generator=torch.Generator().manual_seed(s)) for s in range(100)])
    assert k1.shape == (100, 4)
    neg_elbo = torch.stack([m.loss(x, generator=torch.Generator().manual_seed(s))["neg_elbo"].detach()
                            for s in range(100)]).mean()
    torch.testing.assert_close(k1.mean(), neg_elbo, rtol=0.01, atol=0.5)
    nll_64 = m.iwae_nll(x, k=64, generator=torch.Generator().manual_seed(0))
    assert float(nll_64.mean()) <= float(k1.mean())


def test_overfit_one_batch():
    m, x = _model(), _images(4)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    first = float(m.loss(x)["neg_elbo"].detach())
    for _ in range(60):
        out = m.loss(x)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert float(m.loss(x)["neg_elbo"].detach()) < 0.6 * first


def test_determinism_under_seed():
    a, b = _model(seed=3), _model(seed=3)
    x = _images()
    la = a.loss(x, generator=torch.Generator().manual_seed(5))
    lb = b.loss(x, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(la["loss"], lb["loss"])
    torch.testing.assert_close(a.sample(3, generator=torch.Generator().manual_seed(1)),
                               b.sample(3, generator=torch.Generator().manual_seed(1)))


def test_bad_input_raises():
    m = _model()
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        m.encode(torch.rand(2, 28, 28))
    with pytest.raises(ValueError, match="scale='\\[0, 1\\]'"):
        m.loss(torch.rand(2, 1, 28, 28) * 2 - 1)  # [-1, 1] images: not a Bernoulli target
    with pytest.raises(ValueError, match="z must be"):
        m.decode(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="beta"):
        ConvVAEConfig(beta=-1)
    with pytest.raises(ValueError, match="divisible by 4"):
        ConvVAEConfig(image_size=30)
    with pytest.raises(ValueError, match="binarize"):
        binarize(torch.full((1, 1, 28, 28), 2.0))
    with pytest.raises(ValueError, match="sigma"):
        LinearGaussian(torch.zeros(3, 2), torch.zeros(3), 0.0)


def test_build_model_round_trip():
    m = _model(latent_dim=3)
    m2 = build_model("conv_vae", m.config_dict())
    assert isinstance(m2, ConvVAE) and m2.config == m.config


def test_recipe_fast_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path))
    from aigc_course.pretrained import load_pretrained
    from aigc_course.recipes import run

    card = run("conv_vae_mnist", fast=True)
    model, loaded = load_pretrained("conv_vae_mnist")  # the cache copy wins over the shipped one
    assert loaded["train_command"].endswith("--fast") and loaded["metrics"] == card["metrics"]
    assert isinstance(model, ConvVAE) and model.config.latent_dim == 4
    for key in ("neg_elbo_nats", "rec_nats", "kl_nats", "bits_per_dim", "active_units"):
        assert key in card["metrics"]
    m = card["metrics"]
    assert math.isclose(m["bits_per_dim"], m["neg_elbo_nats"] / (784 * math.log(2)), rel_tol=1e-3)
    assert model.sample(2).shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="recipe"):
        run("conv_vae_mnist", fast=True, recipe="tpu")
