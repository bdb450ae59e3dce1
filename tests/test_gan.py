"""Tests for the image GANs (aigc_course.models.gan), GAN theory (aigc_course.maths.gan) and the
``dcgan_mnist`` recipe (notebooks 3.5, 4.3 and 5.7)."""

from __future__ import annotations

import math

import pytest
import torch
from data_marks import needs_data

from aigc_course.maths.gan import (
    Fit1DConfig,
    fit_discriminator_1d,
    gaussian_pdf,
    generator_gradients,
    integrate,
    js_divergence,
    kl_divergence,
    mixture_pdf,
    optimal_discriminator,
    value_function,
)
from aigc_course.models import (
    DCGAN,
    MLPGAN,
    DCGANConfig,
    MinibatchStdDev,
    MLPGANConfig,
    ToyGAN,
    ToyGANConfig,
    build_model,
)
from aigc_course.models.gan import d_loss_from_logits, g_loss_from_logits
from aigc_course.train import train_gan


def small_models():
    return {"mlp": MLPGAN(MLPGANConfig(latent_dim=8, hidden=32)),
            "dcgan": DCGAN(DCGANConfig(latent_dim=8, g_channels=8, d_channels=4)),
            "dcgan_mbstd": DCGAN(DCGANConfig(latent_dim=8, g_channels=8, d_channels=4, minibatch_std=True))}


def fake_digits(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 28, 28, generator=g) * 2 - 1


@pytest.mark.parametrize("name", ["mlp", "dcgan", "dcgan_mbstd"])
def test_generator_outputs_28x28_in_range(name):
    torch.manual_seed(0)
    model = small_models()[name]
    x = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, 1, 28, 28)
    assert x.min() >= -1 and x.max() <= 1
    assert model.discriminator(x).shape == (5, 1)


def test_shipped_size_config_is_small():
    from aigc_course.recipes.dcgan_mnist import RECIPES

    model = DCGAN(RECIPES["cpu"][0])
    assert sum(p.numel() for p in model.parameters()) * 4 <= 3e6  # fp32 bytes, G and D together


@pytest.mark.parametrize("name", ["mlp", "dcgan_mbstd"])
def test_each_loss_reaches_only_its_player(name):
    torch.manual_seed(0)
    model = small_models()[name]
    model.d_loss(fake_digits()).backward()
    assert all(p.grad is None for p in model.generator.parameters())  # fakes are detached
    assert all(p.grad is not None for p in model.discriminator.parameters())
    model.zero_grad(set_to_none=True)
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=1e-2)
    d_before = [p.detach().clone() for p in model.discriminator.parameters()]
    model.g_loss(8).backward()
    assert all(p.grad is not None for p in model.generator.parameters())
    opt_g.step()  # only G's optimiser steps: D is unchanged
    for p, q in zip(model.discriminator.parameters(), d_before):
        torch.testing.assert_close(p.detach(), q)


def test_discriminator_overfits_a_batch():
    torch.manual_seed(0)
    model = small_models()["dcgan"]
    x_real = fake_digits(16)
    x_fake = model.sample(16).detach()
    opt = torch.optim.Adam(model.discriminator.parameters(), lr=1e-2)
    for _ in range(60):
        loss = d_loss_from_logits(model.discriminator(x_real), model.discriminator(x_fake))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_losses_on_logits_match_the_formulas():
    logit = torch.tensor([-3.0, 0.0, 2.0])
    d = torch.sigmoid(logit)
    torch.testing.assert_close(d_loss_from_logits(logit, logit), -(d.log() + (1 - d).log()).mean())
    torch.testing.assert_close(g_loss_from_logits(logit), -d.log().mean())
    torch.testing.assert_close(g_loss_from_logits(logit, saturating=True), (1 - d).log().mean())


def test_minibatch_std_layer():
    layer = MinibatchStdDev(group_size=2)
    x = torch.tensor([[0.0, 0.0], [5.0, 5.0], [2.0, 2.0], [5.0, 5.0]])  # groups {0, 2} and {1, 3}
    out = layer(x)
    assert out.shape == (4, 3)
    torch.testing.assert_close(out[:, 2], torch.tensor([1.0, 0.0, 1.0, 0.0]), atol=1e-3, rtol=0)
    assert layer(torch.randn(6, 3, 7, 7)).shape == (6, 4, 7, 7)
    assert layer(torch.randn(5, 3)).shape == (5, 4)  # not a multiple: one group of the whole batch
    with pytest.raises(ValueError, match="group_size"):
        MinibatchStdDev(1)


def test_training_is_deterministic_under_a_seed():
    x = fake_digits(64)

    def run():
        torch.manual_seed(0)
        model = DCGAN(DCGANConfig(latent_dim=8, g_channels=8, d_channels=4))
        hd, hg = train_gan(model, x, steps=3, batch_size=8, seed=0, progress=False)
        return hd.loss + hg.loss, model.sample(4, generator=torch.Generator().manual_seed(1))

    (la, sa), (lb, sb) = run(), run()
    assert la == lb
    torch.testing.assert_close(sa, sb)


def test_toy_gan_is_a_gan_with_the_shared_losses():
    """The toy GAN of chapter 2.3 reuses the losses of this file: same numbers for the same z."""
    x = torch.randn(32, 2)
    m = ToyGAN(ToyGANConfig(width=16))
    torch.manual_seed(0)
    got_d, got_g = m.d_loss(x), m.g_loss(32)
    torch.manual_seed(0)
    fake = m.generator(torch.randn(32, 2)).detach()
    want_d = d_loss_from_logits(m.discriminator(x), m.discriminator(fake))
    want_g = g_loss_from_logits(m.discriminator(m.generator(torch.randn(32, 2))))
    torch.testing.assert_close(got_d, want_d)
    torch.testing.assert_close(got_g, want_g)
    hd, hg = train_gan(m, x, steps=5, batch_size=16, lr=1e-3, seed=0, progress=False)
    assert len(hd.loss) == len(hg.loss) == 5


def test_bad_inputs_raise_clear_errors():
    model = small_models()["mlp"]
    with pytest.raises(ValueError, match="scaled to"):
        model.d_loss(torch.randn(4, 784))
    with pytest.raises(ValueError, match="positive"):
        model.sample(0)
    with pytest.raises(ValueError, match="positive"):
        train_gan(model, fake_digits(), steps=0)
    with pytest.raises(ValueError, match="tensor"):
        train_gan(model, [1, 2, 3], steps=1)
    with pytest.raises(ValueError, match="even"):
        DCGAN(DCGANConfig(g_channels=7))


def test_config_roundtrip_through_build_model():
    for arch, model in (("mlp_gan", MLPGAN(MLPGANConfig(data_shape=(2,), hidden=16, tanh=False))),
                        ("dcgan", DCGAN(DCGANConfig(g_channels=8, d_channels=4)))):
        rebuilt = build_model(arch, {k: list(v) if isinstance(v, tuple) else v for k, v in model.config_dict().items()})
        rebuilt.load_state_dict(model.state_dict())
        assert rebuilt.config == model.config


# GAN theory -------------------------------------------------------------------------------------

GRID = torch.linspace(-15, 15, 6001, dtype=torch.float64)


def test_optimal_discriminator_maximises_v_and_gives_js_identity():
    p, q = gaussian_pdf(GRID, 0, 1), mixture_pdf(GRID, [-2, 3], [0.5, 1.0], [0.3, 0.7])
    assert abs(float(integrate(p, GRID)) - 1) < 1e-8
    d_star = optimal_discriminator(p, q)
    v_star = value_function(d_star, p, q, GRID)
    assert v_star == pytest.approx(-math.log(4) + 2 * js_divergence(p, q, GRID), abs=1e-6)
    for other in (torch.full_like(GRID, 0.5), (d_star * 0.9 + 0.05)):  # any other D scores lower
        assert value_function(other, p, q, GRID) < v_star
    assert value_function(optimal_discriminator(p, p), p, p, GRID) == pytest.approx(-math.log(4), abs=1e-8)


def test_js_divergence_properties():
    p, q = gaussian_pdf(GRID, 0, 1), gaussian_pdf(GRID, 1, 1)
    assert js_divergence(p, p, GRID) == pytest.approx(0, abs=1e-10)
    assert js_divergence(p, q, GRID) == pytest.approx(js_divergence(q, p, GRID), abs=1e-10)
    assert kl_divergence(p, q, GRID) == pytest.approx(0.5, abs=1e-6)  # (mu1 - mu2)^2 / 2 for unit variances
    far = gaussian_pdf(GRID, 12, 0.3)
    assert js_divergence(p, far, GRID) == pytest.approx(math.log(2), abs=1e-6)  # disjoint supports
    with pytest.raises(ValueError, match="grid"):
        js_divergence(p[:10], q, GRID)


def test_generator_gradients_saturate_only_for_minimax():
    g = generator_gradients(torch.tensor([1e-3, 0.5]))
    assert abs(g["minimax"][0]) < 2e-3 and g["non_saturating"][0] == pytest.approx(-1 + 1e-3)
    with pytest.raises(ValueError, match="between 0 and 1"):
        generator_gradients(torch.tensor([0.0]))


def test_trained_discriminator_approaches_d_star():
    g = torch.Generator().manual_seed(0)
    x_data, x_g = torch.randn(4000, generator=g), torch.randn(4000, generator=g) * 0.5 + 1.5
    disc, losses = fit_discriminator_1d(x_data, x_g, Fit1DConfig(hidden=16, steps=300, lr=1e-2))
    x = torch.linspace(-1, 2.5, 50)
    with torch.no_grad():
        d = torch.sigmoid(disc(x[:, None]))[:, 0].double()
    d_star = optimal_discriminator(gaussian_pdf(x.double(), 0, 1), gaussian_pdf(x.double(), 1.5, 0.5))
    assert (d - d_star).abs().mean() < 0.1 and losses[-1] < losses[0]


# The recipe -------------------------------------------------------------------------------------


@needs_data
def test_recipe_runs_and_reloads(tmp_path, monkeypatch):
    from aigc_course.pretrained import load_pretrained
    from aigc_course.recipes import run

    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path))
    card = run("dcgan_mnist", out_dir=tmp_path / "weights", fast=True)
    assert card["train_command"] == "python -m aigc_course.train dcgan_mnist --fast"
    assert (tmp_path / "weights" / "dcgan_mnist.safetensors").is_file()
    model, card2 = load_pretrained("dcgan_mnist")  # the user cache (tmp_path/weights) wins
    assert card2["metrics"] == card["metrics"] and isinstance(model, DCGAN)
    assert 0 <= card["metrics"]["confident_frac"] <= 1
    x = model.sample(3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 1, 28, 28)
