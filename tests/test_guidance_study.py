"""The guidance study helpers of chapters 5.10 and 5.11, on a tiny untrained pipeline."""

from __future__ import annotations

import math

import pytest
import torch

from aigc_course.diffusion import NoiseSchedule, ScheduleConfig
from aigc_course.diffusion.pipeline import TextToImage
from aigc_course.models import CNNClassifier, CNNConfig, MiniCLIP, MiniCLIPConfig, UNet, UNetConfig
from aigc_course.studies import guidance as gs
from aigc_course.text.prompts import build_vocab


def tiny_pipe() -> TextToImage:
    torch.manual_seed(0)
    vocab = build_vocab()
    clip = MiniCLIP(MiniCLIPConfig(vocab_size=vocab.vocab_size, embed_dim=16, image_channels=(8, 8, 16),
                                   text_width=16, text_layers=1, text_heads=2)).eval()
    unet = UNet(UNetConfig(base=8, time_dim=32, cond_dim=16))
    torch.nn.init.normal_(unet.out[-1].weight, std=0.05)
    return TextToImage(clip, vocab, unet.eval(), NoiseSchedule(ScheduleConfig(num_steps=100)))


def tiny_classifier():
    torch.manual_seed(0)
    return CNNClassifier(CNNConfig()).eval()


def test_prompted_samples_shapes_and_common_noise():
    pipe = tiny_pipe()
    images, labels, prompts = gs.prompted_samples(pipe, per_digit=2, guidance_scale=2.0, num_steps=3, batch_size=7)
    assert images.shape == (20, 1, 28, 28) and labels.tolist() == [d for d in range(10) for _ in range(2)]
    assert prompts[0] == "a handwritten zero" and prompts[-1] == "a handwritten nine"
    again, _, _ = gs.prompted_samples(pipe, per_digit=2, guidance_scale=2.0, num_steps=3, batch_size=7)
    torch.testing.assert_close(images, again)  # deterministic under the seed
    with pytest.raises(ValueError, match="per_digit"):
        gs.prompted_samples(pipe, per_digit=0)


def test_diversity_zero_for_copies_and_known_value():
    labels = torch.tensor([0, 0, 1, 1])
    feats = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 1.0], [1.0, 1.0]])
    assert gs.within_prompt_diversity(feats, labels) == pytest.approx((5.0 + 0.0) / 2)
    with pytest.raises(ValueError, match="at least 2"):
        gs.within_prompt_diversity(feats[:3], labels[:3])
    with pytest.raises(ValueError, match="labels"):
        gs.within_prompt_diversity(feats, labels[:3])


def test_sweep_rows_and_plot():
    pipe = tiny_pipe()
    cfg = gs.SweepConfig(scales=(0.0, 3.0), per_digit=2, num_steps=2)
    real = torch.randn(30, 64)
    rows = gs.guidance_sweep(pipe, cfg, classifier=tiny_classifier(), real_feats=real)
    assert [r["scale"] for r in rows] == [0.0, 3.0]
    for r in rows:
        assert 0 <= r["accuracy"] <= 1 and r["diversity"] >= 0 and 0 <= r["clip_score"] <= 100
        assert set(r) == {"scale", "accuracy", "diversity", "clip_score", "kid", "seconds"}
    axes = gs.plot_sweep(rows, reference={"accuracy": 1.0})
    assert len(axes) == 3
    with pytest.raises(ValueError, match="scales"):
        gs.guidance_sweep(pipe, gs.SweepConfig(scales=(-1.0,)))


def test_clip_score_matches_manual_cosine():
    pipe = tiny_pipe()
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    prompts = ["7", "the digit two", "a handwritten one"]
    sims = gs.similarity_matrix(pipe.clip, pipe.vocab, x, prompts)
    assert sims.shape == (3, 3) and sims.abs().max() <= 1 + 1e-5
    assert gs.clip_score_of(pipe, x, prompts) == pytest.approx(100 * sims.diagonal().clamp(min=0).mean().item(),
                                                               rel=1e-5)


def test_slerp_endpoints_norm_and_errors():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(2, 4, 7, 7, generator=g).unbind(0)
    torch.testing.assert_close(gs.slerp(z0, z1, 0.0), z0)
    torch.testing.assert_close(gs.slerp(z0, z1, 1.0), z1)
    mid, lerp = gs.slerp(z0, z1, 0.5), (z0 + z1) / 2
    assert mid.norm() > 0.95 * (z0.norm() + z1.norm()) / 2 and lerp.norm() < 0.8 * mid.norm()
    torch.testing.assert_close(gs.slerp(z0, z0, 0.3), z0)  # parallel: no division by sin 0
    with pytest.raises(ValueError, match="shape"):
        gs.slerp(z0, z1[:2], 0.5)


def test_timing_helpers_and_psnr():
    pipe = tiny_pipe()
    threads = torch.get_num_threads()
    times = gs.time_sampling(pipe, n=2, num_steps=2, threads=1)
    assert set(times) == {"wall", "cpu"} and times["wall"] > 0
    assert torch.get_num_threads() == threads  # restored
    assert gs.time_call(lambda: sum(range(100)), repeats=3) >= 0
    with pytest.raises(ValueError, match="repeats"):
        gs.time_call(lambda: None, repeats=0)
    x = torch.zeros(1, 1, 4, 4)
    assert gs.psnr(x, x) == math.inf
    assert gs.psnr(x, x + 0.2) == pytest.approx(10 * math.log10(4 / 0.04))
    with pytest.raises(ValueError, match="shape"):
        gs.psnr(x, x[0])


def test_guidance_panel_draws_and_caches():
    """One pipeline run per guidance scale: a scale seen before is drawn from the cache, and every
    scale starts from the same noise (so the panels differ only by the scale)."""
    import matplotlib.pyplot as plt

    pipe = tiny_pipe()
    calls = []

    class Counting:
        shape = pipe.shape

        def __call__(self, prompts, scale, num_steps, x=None):
            calls.append((scale, x.clone()))
            return pipe(prompts, scale, num_steps, x=x)

    draw = gs.guidance_panel(Counting(), "a handwritten three", n=2, num_steps=2, nrow=2)
    fig, ax = plt.subplots()
    draw(ax, guidance_scale=1.0)
    first = ax.images[-1].get_array().copy()
    draw(ax, guidance_scale=1.0)
    assert len(calls) == 1  # cached: the pipeline ran once for scale 1
    assert (ax.images[-1].get_array() == first).all()
    draw(ax, guidance_scale=5.0)
    assert [s for s, _ in calls] == [1.0, 5.0]
    assert torch.equal(calls[0][1], calls[1][1])  # the same starting noise at both scales
    assert not (ax.images[-1].get_array() == first).all()
    draw(ax, guidance_scale=5)  # an int scale hits the float key
    assert len(calls) == 2
    plt.close(fig)
