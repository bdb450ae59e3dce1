"""The diffusion schedule and samplers, checked against diffusers and against the closed forms."""

import diffusers  # a test dependency (pyproject: dev); no download needed
import pytest
import torch

from aigc_course.diffusion import (
    NoiseSchedule,
    ScheduleConfig,
    ddim_step,
    ddim_timesteps,
    ddpm_step,
    eps_loss,
    sample_ddim,
    sample_ddpm,
)


@pytest.mark.parametrize("kind, name", [("linear", "linear"), ("cosine", "squaredcos_cap_v2")])
def test_schedule_constants_match_diffusers(kind, name):
    ours = NoiseSchedule(ScheduleConfig(kind=kind))
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=name)
    torch.testing.assert_close(ours.betas, ref.betas.float())
    torch.testing.assert_close(ours.alphas_cumprod, ref.alphas_cumprod.float(), rtol=1e-5, atol=1e-7)
    if kind == "linear":
        assert float(ours.alphas_cumprod[-1]) == pytest.approx(4.0358e-05, rel=1e-3)


@pytest.mark.parametrize("t", [999, 500, 1, 0])
def test_one_ddpm_step_matches_diffusers(t):
    sched = NoiseSchedule()
    ref = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False)
    ref.set_timesteps(1000)
    g = torch.Generator().manual_seed(0)
    xt, eps = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
    expected = ref.step(eps, t, xt, generator=torch.Generator().manual_seed(1)).prev_sample
    noise = torch.randn(xt.shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ddpm_step(sched, xt, t, eps, noise=noise), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("k", [0, 25, 49])
def test_one_ddim_step_matches_diffusers(k):
    sched = NoiseSchedule()
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=False)
    ref.set_timesteps(50)
    steps = ddim_timesteps(1000, 50)
    assert steps == [int(t) for t in ref.timesteps]
    t = steps[k]
    prev_t = steps[k + 1] if k + 1 < len(steps) else -1
    g = torch.Generator().manual_seed(k)
    xt, eps = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
    expected = ref.step(eps, t, xt, eta=0.0).prev_sample
    torch.testing.assert_close(ddim_step(sched, xt, t, prev_t, eps), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("k", [0, 25, 49])
def test_one_clipped_ddim_step_matches_diffusers_with_clipped_model_output(k):
    sched = NoiseSchedule()
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True)
    ref.set_timesteps(50)
    steps = ddim_timesteps(1000, 50)
    t = steps[k]
    prev_t = steps[k + 1] if k + 1 < len(steps) else -1
    g = torch.Generator().manual_seed(k)
    xt, eps = 3 * torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
    assert sched.predict_x0(xt, t, eps).abs().max() > 1  # the clip is active
    expected = ref.step(eps, t, xt, eta=0.0, use_clipped_model_output=True).prev_sample
    torch.testing.assert_close(ddim_step(sched, xt, t, prev_t, eps, clip_x0=True), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("k, clip", [(0, False), (25, True), (48, False)])
def test_one_stochastic_ddim_step_matches_diffusers(k, clip):
    sched = NoiseSchedule()
    ref = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=clip)
    ref.set_timesteps(50)
    steps = ddim_timesteps(1000, 50)
    t, prev_t = steps[k], steps[k + 1]
    g = torch.Generator().manual_seed(k)
    xt, eps, noise = (torch.randn(2, 1, 8, 8, generator=g) for _ in range(3))
    expected = ref.step(eps, t, xt, eta=0.5, use_clipped_model_output=clip, variance_noise=noise).prev_sample
    got = ddim_step(sched, xt, t, prev_t, eps, clip_x0=clip, eta=0.5, noise=noise)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("t, clip", [(999, False), (500, True), (1, True)])
def test_ddim_with_eta_one_and_every_step_is_the_ddpm_step(t, clip):
    sched = NoiseSchedule()
    g = torch.Generator().manual_seed(t)
    xt, eps, noise = 2 * torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g), \
        torch.randn(2, 1, 8, 8, generator=g)
    torch.testing.assert_close(ddim_step(sched, xt, t, t - 1, eps, clip_x0=clip, eta=1.0, noise=noise),
                               ddpm_step(sched, xt, t, eps, noise=noise, clip_x0=clip), rtol=1e-4, atol=1e-5)


def test_stochastic_ddim_sampling_is_seeded_and_eta_zero_is_unchanged():
    sched = NoiseSchedule()
    model = lambda x, t: 0.1 * x  # noqa: E731 - a stand-in noise predictor
    run = lambda eta, seed: sample_ddim(model, sched, (3, 1, 4, 4), num_steps=10, eta=eta,  # noqa: E731
                                        generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(0.7, 0), run(0.7, 0)) and not torch.equal(run(0.7, 0), run(0.7, 1))
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(run(0.0, 0), sample_ddim(model, sched, x.shape, num_steps=10, x=x))
    with pytest.raises(ValueError, match="eta"):
        ddim_step(sched, x, 500, 400, x, eta=0.5)  # no noise given
    with pytest.raises(ValueError, match="eta must be >= 0"):
        ddim_step(sched, x, 500, 400, x, eta=-1.0)


def test_q_sample_matches_its_moments_monte_carlo():
    sched = NoiseSchedule()
    x0 = torch.full((20000, 1), 0.7)
    t = 300
    xt = sched.q_sample(x0, torch.tensor(t))
    abar = float(sched.alphas_cumprod[t])
    assert float(xt.mean()) == pytest.approx(abar**0.5 * 0.7, abs=0.02)
    assert float(xt.var()) == pytest.approx(1 - abar, rel=0.03)


def test_posterior_mean_with_true_noise_and_x0_prediction():
    sched = NoiseSchedule()
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    xt = sched.q_sample(x0, t, eps)
    torch.testing.assert_close(sched.predict_x0(xt, t, eps), x0, rtol=1e-3, atol=2e-3)
    assert float(sched.posterior_variance[0]) == 0.0  # the last step adds no noise


def test_samplers_with_the_true_noise_recover_a_point():
    """With the exact eps of a known x0 (here: data = one point), DDIM lands on it."""
    sched = NoiseSchedule(ScheduleConfig(num_steps=100))
    target = torch.tensor([[0.5, -0.25]])

    def eps_model(x, t):  # the exact noise that maps x_t back to target
        abar = sched.alphas_cumprod[t].view(-1, 1)
        return (x - abar.sqrt() * target) / (1 - abar).sqrt()

    g = torch.Generator().manual_seed(0)
    out = sample_ddim(eps_model, sched, (3, 2), num_steps=10, generator=g)
    torch.testing.assert_close(out, target.expand(3, 2), rtol=1e-4, atol=1e-4)
    out = sample_ddpm(eps_model, sched, (3, 2), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, target.expand(3, 2), rtol=1e-3, atol=1e-3)
    a = sample_ddim(eps_model, sched, (3, 2), 10, generator=torch.Generator().manual_seed(5))
    b = sample_ddim(eps_model, sched, (3, 2), 10, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_eps_loss_is_zero_for_a_perfect_model_and_has_gradients():
    sched = NoiseSchedule()
    x0 = torch.randn(8, 2)
    net = torch.nn.Linear(2, 2)
    loss = eps_loss(lambda x, t: net(x), sched, x0, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert net.weight.grad is not None and loss > 0


def test_bad_input():
    with pytest.raises(ValueError, match="kind"):
        NoiseSchedule(ScheduleConfig(kind="quadratic"))
    sched = NoiseSchedule()
    with pytest.raises(ValueError, match="t must be in"):
        sched.q_sample(torch.zeros(2, 1), torch.tensor([0, 1000]))
    with pytest.raises(ValueError, match="prev_t"):
        ddim_step(sched, torch.zeros(1, 1), 10, 10, torch.zeros(1, 1))
    with pytest.raises(ValueError, match="num_steps"):
        ddim_timesteps(1000, 0)


def test_shipped_ddpm_mnist_draws_digits():
    """The shipped weights are a trained model: the course classifier reads most DDIM-20 samples
    with confidence and finds many different digits among them (the 12,000-step weights: mean top
    probability 0.92 over 1,000 DDIM-50 samples, all ten digits)."""
    from aigc_course.pretrained import load_pretrained

    model, card = load_pretrained("ddpm_mnist")
    classifier, _ = load_pretrained("mnist_cnn")
    schedule = NoiseSchedule(ScheduleConfig(**card["schedule"]))
    with torch.no_grad():
        x = sample_ddim(model, schedule, (64, 1, 28, 28), num_steps=20, generator=torch.Generator().manual_seed(0))
        probs = torch.softmax(classifier(x.clamp(-1, 1)), dim=-1)
    top = probs.max(dim=-1)
    assert top.values.mean() > 0.8, top.values.mean()
    assert len(top.indices.unique()) >= 8, top.indices.unique()
