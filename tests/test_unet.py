"""The diffusion U-Net: shapes, conditioning, guidance, learning, errors."""

import pytest
import torch

from aigc_course.diffusion import NoiseSchedule, eps_loss, guided_eps
from aigc_course.models import UNet, UNetConfig, build_model, timestep_embedding


def small(**kw):
    return UNetConfig(base=16, time_dim=32, **kw)


def test_shapes_and_zero_init_output():
    torch.manual_seed(0)
    model = UNet(small())
    x = torch.randn(3, 1, 28, 28)
    out = model(x, torch.tensor([0, 10, 999]))
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0  # the last conv starts at zero
    assert model(x, torch.tensor(5)).shape == x.shape  # a scalar t is broadcast


def test_time_and_class_change_the_output_and_gradients_flow():
    torch.manual_seed(0)
    model = UNet(small(num_classes=10))
    torch.nn.init.normal_(model.out[-1].weight, std=0.02)
    x = torch.randn(2, 1, 28, 28)
    a = model(x, torch.tensor([1, 1]), torch.tensor([3, 3]))
    assert not torch.allclose(a, model(x, torch.tensor([500, 500]), torch.tensor([3, 3])))
    assert not torch.allclose(a, model(x, torch.tensor([1, 1]), torch.tensor([7, 7])))
    a.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None and "cond_proj" not in n]
    assert not missing


def test_guidance_interpolates_conditional_and_unconditional():
    torch.manual_seed(0)
    model = UNet(small(num_classes=10)).eval()
    torch.nn.init.normal_(model.out[-1].weight, std=0.02)
    x, t, y = torch.randn(2, 1, 28, 28), torch.tensor([3, 300]), torch.tensor([1, 2])
    cond, uncond = model(x, t, y), model(x, t, model.null_label(2, x.device))
    torch.testing.assert_close(guided_eps(model, x, t, y, 0.0), uncond, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(guided_eps(model, x, t, y, 1.0), cond, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(guided_eps(model, x, t, y, 3.0), uncond + 3 * (cond - uncond), rtol=1e-4, atol=1e-5)


def test_overfits_one_batch_of_noise_prediction():
    torch.manual_seed(0)
    model = UNet(small(attention=False))
    sched = NoiseSchedule()
    x0 = torch.rand(4, 1, 28, 28) * 2 - 1
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    first = None
    for _ in range(60):
        g.manual_seed(0)  # the same t and noise every step: a fixed regression problem
        loss = eps_loss(model, sched, x0, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.5 * first


def test_timestep_embedding_and_build_model():
    e = timestep_embedding(torch.tensor([0, 1, 999]), 16)
    assert e.shape == (3, 16) and float(e.abs().max()) <= 1.0
    torch.testing.assert_close(e[0, :8], torch.ones(8))  # cos(0) = 1
    model = build_model("unet", UNet(small(num_classes=10)).config_dict())
    assert isinstance(model, UNet) and model.config.mults == (1, 2, 2)


def test_vector_conditioning():
    torch.manual_seed(0)
    model = UNet(small(cond_dim=8))
    torch.nn.init.normal_(model.out[-1].weight, std=0.02)
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([10, 10])
    a = model(x, t, cond=torch.randn(2, 8))
    assert not torch.allclose(a, model(x, t, cond=torch.randn(2, 8)))


def test_odd_sizes_keep_their_shape():
    # 7x7 latents go 7 -> 4 -> 2 and back: the decoder resizes to each skip connection's size
    model = UNet(small())
    assert model(torch.randn(2, 1, 7, 7), torch.tensor([3, 4])).shape == (2, 1, 7, 7)


def test_vector_guidance():
    torch.manual_seed(0)
    model = UNet(small(cond_dim=8))
    torch.nn.init.normal_(model.out[-1].weight, std=0.02)
    x, t, c, null = torch.randn(2, 1, 28, 28), torch.tensor([5, 9]), torch.randn(2, 8), torch.zeros(8)
    cond, uncond = model(x, t, cond=c), model(x, t, cond=null.expand(2, 8))
    torch.testing.assert_close(guided_eps(model, x, t, scale=2.0, cond=c, null_cond=null),
                               uncond + 2 * (cond - uncond), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="null_cond"):
        guided_eps(model, x, t, scale=2.0, cond=c)
    with pytest.raises(ValueError, match="exactly one"):
        guided_eps(model, x, t, scale=2.0)


def test_bad_input():
    model = UNet(small())
    with pytest.raises(ValueError, match="expects images"):
        model(torch.randn(2, 28, 28), torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="no class conditioning"):
        model(torch.randn(2, 1, 28, 28), torch.tensor([1, 1]), torch.tensor([0, 1]))
