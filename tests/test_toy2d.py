"""Tests for the 2D generative models of notebook 2.3 (aigc_course.models.toy2d)."""

from __future__ import annotations

import math

import pytest
import torch

from aigc_course.models import (
    ToyARConfig,
    ToyAutoregressive,
    ToyDiffusion,
    ToyDiffusionConfig,
    ToyGAN,
    ToyGANConfig,
    ToyVAE,
    ToyVAEConfig,
    timestep_embedding,
)
from aigc_course.train import train_gan


def small_models():
    return {
        "ar": ToyAutoregressive(ToyARConfig(n_bins=16, width=32)),
        "vae": ToyVAE(ToyVAEConfig(width=32)),
        "gan": ToyGAN(ToyGANConfig(width=32)),
        "diffusion": ToyDiffusion(ToyDiffusionConfig(T=20, width=32, time_dim=8)),
    }


def blob(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) * 0.3 + torch.tensor([1.0, -0.5])


@pytest.mark.parametrize("name", ["ar", "vae", "gan", "diffusion"])
def test_sample_shape_and_determinism(name):
    torch.manual_seed(0)
    model = small_models()[name]
    a = model.sample(50, generator=torch.Generator().manual_seed(3))
    b = model.sample(50, generator=torch.Generator().manual_seed(3))
    c = model.sample(50, generator=torch.Generator().manual_seed(4))
    assert a.shape == (50, 2) and torch.isfinite(a).all()
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("name", ["ar", "vae", "diffusion"])
def test_loss_decreases_on_one_batch(name):
    torch.manual_seed(0)
    model = small_models()[name]
    x = blob()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss():
        out = model.loss(x)
        return out["loss"] if isinstance(out, dict) else out

    torch.manual_seed(1)
    first = sum(loss().item() for _ in range(5)) / 5
    for _ in range(150):
        opt.zero_grad()
        loss().backward()
        opt.step()
    torch.manual_seed(1)
    last = sum(loss().item() for _ in range(5)) / 5
    assert last < first - 0.1, (first, last)


def test_ar_log_prob_is_a_normalised_density():
    torch.manual_seed(0)
    model = ToyAutoregressive(ToyARConfig(n_bins=8, lo=-2.0, hi=2.0, width=16))
    centres = model.bin_centre(torch.arange(8))
    grid = torch.cartesian_prod(centres, centres)  # (64, 2), one point per cell
    total = (model.log_prob(grid).exp() * model.bin_width**2).sum()
    torch.testing.assert_close(total, torch.tensor(1.0), rtol=1e-5, atol=1e-5)
    assert model.to_bins(torch.tensor([[-5.0, 5.0]])).tolist() == [[0, 7]]


def test_vae_loss_terms():
    torch.manual_seed(0)
    model = ToyVAE(ToyVAEConfig(width=16, decoder_std=0.2))
    out = model.loss(blob())
    assert set(out) == {"loss", "rec", "kl"}
    torch.testing.assert_close(out["loss"], out["rec"] + out["kl"])
    assert out["kl"] >= 0
    mu, logvar = model.encode(blob(5))
    assert mu.shape == logvar.shape == (5, 2)
    # reparameterisation: z = mu + sigma * eps, differentiable in mu
    eps = torch.ones(5, 2)
    torch.testing.assert_close(model.reparameterize(mu, logvar, eps), mu + (0.5 * logvar).exp())
    with pytest.raises(ValueError, match="decoder_std"):
        ToyVAE(ToyVAEConfig(decoder_std=0.0))


def test_gan_losses_and_training():
    torch.manual_seed(0)
    model = ToyGAN(ToyGANConfig(width=32))
    d, g = model.d_loss(blob()), model.g_loss(16)
    assert d.dim() == 0 and g.dim() == 0
    # at D = 1/2 everywhere (logit 0) the losses are 2 log 2 and log 2
    torch.nn.init.zeros_(model.discriminator.net[-1].weight)
    torch.nn.init.zeros_(model.discriminator.net[-1].bias)
    torch.testing.assert_close(model.d_loss(blob()), torch.tensor(2 * math.log(2)))
    torch.testing.assert_close(model.g_loss(8), torch.tensor(math.log(2)))
    # the generator moves towards the data: its mean gets closer to the blob's centre
    model = ToyGAN(ToyGANConfig(width=32))
    target = torch.tensor([1.0, -0.5])
    before = (model.sample(256, torch.Generator().manual_seed(0)).mean(0) - target).norm()
    hist_d, hist_g = train_gan(model, blob(512), steps=150, batch_size=64, lr=2e-3)
    after = (model.sample(256, torch.Generator().manual_seed(0)).mean(0) - target).norm()
    assert len(hist_d.loss) == len(hist_g.loss) == 150
    assert after < 0.5 * before, (before, after)


def test_linear_schedule_alphas_cumprod():
    model = ToyDiffusion(ToyDiffusionConfig(T=10, beta_start=0.01, beta_end=0.1))
    betas = torch.linspace(0.01, 0.1, 10)
    torch.testing.assert_close(model.schedule.betas, betas)
    expected = torch.tensor([math.prod(1 - b for b in betas[: t + 1].tolist()) for t in range(10)])
    torch.testing.assert_close(model.schedule.alphas_cumprod, expected)
    assert model.schedule.posterior_variance[0] == 0
    # the default schedule ends close to pure noise
    assert ToyDiffusion().schedule.alphas_cumprod[-1] < 1e-3


def test_q_sample_closed_form_by_monte_carlo():
    model = ToyDiffusion(ToyDiffusionConfig(T=50))
    x0 = torch.tensor([[1.5, -2.0]]).expand(40_000, 2)
    for step in (0, 10, 49):
        t = torch.full((len(x0),), step)
        torch.manual_seed(step)
        xt = model.q_sample(x0, t)
        abar = model.schedule.alphas_cumprod[step]
        torch.testing.assert_close(xt.mean(0), abar.sqrt() * x0[0], atol=0.02, rtol=0)
        torch.testing.assert_close(xt.var(0), (1 - abar).expand(2), atol=0.02, rtol=0.03)
    noise = torch.randn(4, 2)
    t = torch.tensor([0, 1, 2, 3])
    abar = model.schedule.alphas_cumprod[t][:, None]
    torch.testing.assert_close(model.q_sample(x0[:4], t, noise), abar.sqrt() * x0[:4] + (1 - abar).sqrt() * noise)


def test_diffusion_trajectory_and_embedding():
    torch.manual_seed(0)
    model = ToyDiffusion(ToyDiffusionConfig(T=5, width=16, time_dim=8))
    traj = model.sample(7, torch.Generator().manual_seed(0), return_trajectory=True)
    assert len(traj) == 6 and all(x.shape == (7, 2) for x in traj)
    emb = timestep_embedding(torch.tensor([0, 3]), 8)
    assert emb.shape == (2, 8)
    torch.testing.assert_close(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))  # [cos, sin] at t = 0, as the U-Net


def test_bad_input_raises_clear_errors():
    models = small_models()
    bad = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        models["ar"].loss(bad)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        models["vae"].loss(bad)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        models["gan"].d_loss(torch.zeros(4))
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        models["diffusion"].loss(bad)
    with pytest.raises(ValueError, match="t must have shape"):
        models["diffusion"](torch.zeros(4, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="beta"):
        ToyDiffusion(ToyDiffusionConfig(beta_start=0.3, beta_end=0.2))
    with pytest.raises(ValueError, match="positive"):
        train_gan(models["gan"], blob(), steps=0)
