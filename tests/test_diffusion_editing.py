"""Editing samplers (aigc_course.diffusion.editing) and the design workflow (aigc_course.apps.design),
chapter 6.4: SDEdit, RePaint, DDIM inversion, slerp, candidate scoring, diffusers' edit pipelines."""

import pytest
import torch
from torch import nn

from aigc_course.apps.design import (
    MASK_KINDS,
    ReviewConfig,
    make_mask,
    masked_mse,
    score_candidates,
    shortlist,
)
from aigc_course.diffusion import NoiseSchedule, ScheduleConfig, ddim_timesteps, sample_ddim
from aigc_course.diffusion.editing import (
    check_mask,
    ddim_inversion_step,
    ddim_invert,
    q_jump,
    repaint,
    sdedit,
    slerp,
    start_step,
    steps_for_strength,
)

SCHED = NoiseSchedule(ScheduleConfig(num_steps=100))


class ToyEps(nn.Module):
    """A small random convolutional eps-model: smooth in x and t, enough to exercise the loops."""

    def __init__(self, channels=1, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, t):
        return 0.3 * torch.tanh(self.conv(x)) * (1 + t.float().view(-1, 1, 1, 1) / 100)


def images(n=4, seed=0, size=8):
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- SDEdit


def test_strength_rule_and_bad_strength():
    assert [steps_for_strength(s, 10) for s in (0, 0.05, 0.3, 0.55, 1.0)] == [0, 0, 3, 5, 10]
    assert start_step(SCHED, 0.0, 10) is None
    assert start_step(SCHED, 1.0, 10) == ddim_timesteps(100, 10)[0]
    assert start_step(SCHED, 0.3, 10) == ddim_timesteps(100, 10)[-3]
    for bad in (-0.1, 1.5, "half"):
        with pytest.raises(ValueError, match="strength"):
            sdedit(ToyEps(), SCHED, images(), bad)


def test_sdedit_strength_zero_returns_the_input():
    x = images()
    out = sdedit(ToyEps(), SCHED, x, 0.0, num_steps=10, generator=seeded())
    assert torch.equal(out, x) and out is not x


def test_sdedit_is_noise_then_the_last_ddim_steps():
    model, x = ToyEps(), images()
    out = sdedit(model, SCHED, x, 0.4, num_steps=10, generator=seeded(3))
    g = seeded(3)
    t0 = ddim_timesteps(100, 10)[6]
    xt = SCHED.q_sample(x, torch.tensor(t0), torch.randn(x.shape, generator=g))
    ref = sample_ddim(model, SCHED, x.shape, 10, generator=g, x=xt, skip_steps=6)
    torch.testing.assert_close(out, ref)


def test_sdedit_determinism_and_faithfulness_falls_with_strength():
    model, x = ToyEps(), images()
    a = sdedit(model, SCHED, x, 0.5, 10, generator=seeded(1))
    assert torch.equal(a, sdedit(model, SCHED, x, 0.5, 10, generator=seeded(1)))
    assert not torch.equal(a, sdedit(model, SCHED, x, 0.5, 10, generator=seeded(2)))
    dist = [(sdedit(model, SCHED, x, s, 10, generator=seeded(1)) - x).pow(2).mean() for s in (0.1, 0.5, 1.0)]
    assert dist[0] < dist[1] < dist[2]


def test_sample_ddim_hooks_validate_and_default_to_the_plain_loop():
    model, x = ToyEps(), torch.randn(2, 1, 8, 8, generator=seeded())
    plain = sample_ddim(model, SCHED, x.shape, 5, x=x)
    torch.testing.assert_close(sample_ddim(model, SCHED, x.shape, 5, x=x, replace=lambda t, z: z), plain)
    assert torch.equal(sample_ddim(model, SCHED, x.shape, 5, x=x, skip_steps=5), x)
    with pytest.raises(ValueError, match="skip_steps"):
        sample_ddim(model, SCHED, x.shape, 5, x=x, skip_steps=6)


# ---------------------------------------------------------------- RePaint


@pytest.mark.parametrize("resample", [1, 3])
def test_repaint_keeps_known_pixels_exactly(resample):
    x = images(3)
    mask = make_mask("centre square", 8)
    out = repaint(ToyEps(), SCHED, x, mask, num_steps=5, resample=resample, generator=seeded())
    assert torch.equal(out * (1 - mask), x * (1 - mask))
    assert not torch.allclose(out * mask, x * mask)  # the hole is regenerated


def test_repaint_determinism_and_per_image_masks():
    x, model = images(2), ToyEps()
    masks = torch.stack([make_mask("bottom half", 8)[0], make_mask("right half", 8)[0]])  # (2, 1, 8, 8)
    a = repaint(model, SCHED, x, masks, 4, resample=2, generator=seeded(5))
    assert torch.equal(a, repaint(model, SCHED, x, masks, 4, resample=2, generator=seeded(5)))
    assert torch.equal(a * (1 - masks), x * (1 - masks))
    b = repaint(model, SCHED, x, masks, 4, resample=2, generator=seeded(5), eta=1.0)
    assert torch.equal(b * (1 - masks), x * (1 - masks))


def test_repaint_bad_input():
    x = images(2)
    with pytest.raises(ValueError, match="does not fit"):
        repaint(ToyEps(), SCHED, x, torch.ones(1, 1, 7, 7))
    with pytest.raises(ValueError, match="does not fit"):
        check_mask(torch.ones(3, 1, 8, 8), x)
    with pytest.raises(ValueError, match="only 0"):
        repaint(ToyEps(), SCHED, x, torch.full((8, 8), 0.5))
    with pytest.raises(ValueError, match="resample"):
        repaint(ToyEps(), SCHED, x, torch.ones(8, 8), resample=0)
    assert check_mask(torch.ones(8, 8, dtype=torch.bool), x).shape == (1, 1, 8, 8)


def test_q_jump_matches_the_forward_marginal():
    x0 = torch.zeros(20000, 1)
    s, t = 10, 60
    xs = SCHED.q_sample(x0, torch.tensor(s), torch.randn(x0.shape, generator=seeded(0)))
    xt = q_jump(SCHED, xs, s, t, torch.randn(x0.shape, generator=seeded(1)))
    torch.testing.assert_close(xt.var(), 1 - SCHED.alphas_cumprod[t], atol=0.02, rtol=0)
    torch.testing.assert_close(q_jump(SCHED, x0 + 1, -1, t, torch.zeros_like(x0))[0, 0],
                               SCHED.alphas_cumprod[t].sqrt())
    with pytest.raises(ValueError, match="forward"):
        q_jump(SCHED, xs, t, s, xs)


# ---------------------------------------------------------------- inversion and interpolation


def test_ddim_inversion_round_trips():
    x = images()
    e = torch.randn(x.shape, generator=seeded(4))

    def constant_eps(xt, t):  # the ODE's direction does not depend on x: inversion is exact
        return e

    x_T = ddim_invert(constant_eps, SCHED, x, num_steps=10)
    torch.testing.assert_close(sample_ddim(constant_eps, SCHED, x.shape, 10, x=x_T, clip_x0=False), x,
                               atol=1e-4, rtol=1e-4)
    model = ToyEps()
    errors = []
    for n in (5, 50):
        x_T = ddim_invert(model, SCHED, x, num_steps=n)
        errors.append((sample_ddim(model, SCHED, x.shape, n, x=x_T, clip_x0=False) - x).abs().max().item())
    assert errors[1] < errors[0] and errors[1] < 0.05
    with pytest.raises(ValueError, match="inversion goes up"):
        ddim_inversion_step(SCHED, x, 5, 5, e)


def test_slerp():
    a, b = torch.randn(3, 1, 4, 4, generator=seeded(0)), torch.randn(3, 1, 4, 4, generator=seeded(1))
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    torch.testing.assert_close(slerp(a, b, 1.0), b)
    u, v = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    torch.testing.assert_close(slerp(u, v, 0.5).norm(), torch.tensor(1.0))  # lerp would give 0.707
    torch.testing.assert_close(slerp(u, 2 * u, 0.5), 1.5 * u)  # parallel: the straight line
    with pytest.raises(ValueError, match="shape"):
        slerp(a, b[:2], 0.5)
    with pytest.raises(ValueError, match="alpha"):
        slerp(a, b, 1.5)


# ---------------------------------------------------------------- the design workflow


class StubNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(64, 64)
        self.head = nn.Linear(64, 10)

    def features(self, x):
        return self.body(x.flatten(1))


def test_masks_and_masked_mse():
    for kind in MASK_KINDS:
        m = make_mask(kind)
        assert m.shape == (1, 1, 28, 28) and m.sum() in (14 * 14, 14 * 28)
    with pytest.raises(ValueError, match="Unknown mask"):
        make_mask("star")
    x = torch.zeros(2, 1, 28, 28)
    y = x + make_mask("bottom half")  # error 1 inside the mask, 0 outside
    assert masked_mse(y, x, make_mask("bottom half")) == 1.0
    assert masked_mse(y, x, make_mask("right half")) == 0.5
    with pytest.raises(ValueError, match="empty"):
        masked_mse(y, x, torch.zeros(1, 1, 28, 28))
    with pytest.raises(ValueError, match="one shape"):
        masked_mse(y[:1], x, make_mask("right half"))


def test_score_candidates_and_shortlist():
    source = images(1, seed=9)
    cands = torch.cat([images(5, seed=1), images(1, seed=1), source])  # row 5 duplicates row 0, row 6 copies
    scores = score_candidates(cands, source, target=3, net=StubNet(), config=ReviewConfig(duplicate_radius=1e-3))
    assert scores["confidence"].shape == (7,) and scores["distance"][6] < 1e-5
    assert int(scores["duplicate"].sum()) == 1 and bool(scores["duplicate"][0] or scores["duplicate"][5])
    cfg = ReviewConfig(min_confidence=0.0, min_distance=1e-3, duplicate_radius=1e-3)
    idx, funnel = shortlist(scores, k=10, config=cfg)
    assert funnel == {"generated": 7, "not a copy": 6, "not a duplicate": 5, "confident": 5, "shortlisted": 5}
    assert 6 not in idx.tolist()
    assert (scores["confidence"][idx].diff() <= 0).all()
    spread = shortlist(scores, k=3, config=cfg, diverse=True)[0]
    assert spread[0] == idx[0] and len(set(spread.tolist())) == 3 and 6 not in spread.tolist()
    gaps = torch.cdist(scores["features"][idx], scores["features"][idx[:1]]).squeeze(1)
    assert spread[1] == idx[int(gaps.argmax())]  # the second is the one farthest from the first
    with pytest.raises(ValueError, match="source"):
        score_candidates(cands, source[0], 3, StubNet())


def test_real_edit_code_runs_on_tiny_stable_diffusion(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    pytest.importorskip("diffusers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from aigc_course.apps.design import edit_pipelines, run_real_edits
    from aigc_course.diffusion.stable_diffusion import tiny_stable_diffusion

    pipe = tiny_stable_diffusion(tmp_path)
    img2img, inpaint = edit_pipelines(pipe)
    assert img2img.unet is pipe.unet and inpaint.vae is pipe.vae  # shared, not copied
    out = run_real_edits(pipe, "a low digit", "a digit", strengths=(0.3, 0.55, 1.0), num_steps=4, guidance=3.0,
                         device="cpu")
    assert out["steps_run"] == [steps_for_strength(s, 4) for s in (0.3, 0.55, 1.0)] == [1, 2, 4]
    assert out["source"].shape == out["inpaint"].shape == (3, 16, 16) and len(out["img2img"]) == 3
    assert all(0 <= float(im.min()) and float(im.max()) <= 1 for im in [out["source"], *out["img2img"]])
    assert out["mask"].sum() == 64 and out["outside_change"] >= 0


def test_sketch_is_blocky_and_two_tone():
    from aigc_course.apps.design import sketch

    s = sketch(images(2, size=28), block=4)
    assert s.shape == (2, 1, 28, 28) and set(s.unique().tolist()) <= {-1.0, 1.0}
    assert torch.equal(s[..., ::4, ::4].repeat_interleave(4, -1).repeat_interleave(4, -2), s)
    with pytest.raises(ValueError, match="multiples"):
        sketch(images(1, size=10), block=4)
