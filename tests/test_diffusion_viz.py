"""The diffusion visualisation helpers and the exact 1D denoisers of chapter 4.5."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from aigc_course.diffusion import NoiseSchedule, ScheduleConfig, sample_ddim, sample_ddpm  # noqa: E402
from aigc_course.studies.diffusion_internals import (  # noqa: E402
    Trajectory,
    ddim_trajectory,
    ddpm_trajectory,
    draw_noised,
    forward_strip,
    gaussian_eps,
    mixture_eps,
    mixture_log_prob_t,
    show_trajectory,
    snr,
)

SCHED = NoiseSchedule(ScheduleConfig(num_steps=50))


def toy_eps(x, t):  # a fixed "network": the exact eps for data N(0.3, 0.5^2)
    return gaussian_eps(x, t, SCHED, mu=0.3, sigma=0.5)


def test_snr_decreases_and_forward_strip_shares_eps():
    s = snr(SCHED)
    assert s.shape == (50,) and bool((s[1:] < s[:-1]).all())
    x0 = torch.rand(3, 1, 4, 4) * 2 - 1
    strip = forward_strip(x0, SCHED, [0, 10, 49], generator=torch.Generator().manual_seed(0))
    assert strip.shape == (3, 3, 1, 4, 4)
    # one shared eps: (x_t - sqrt(abar) x0) / sqrt(1 - abar) is the same at every t
    abar = SCHED.alphas_cumprod[[0, 10, 49]].view(3, 1, 1, 1, 1)
    eps = (strip - abar.sqrt() * x0) / (1 - abar).sqrt()
    torch.testing.assert_close(eps[0], eps[2], rtol=1e-4, atol=1e-4)
    again = forward_strip(x0, SCHED, [0, 10, 49], generator=torch.Generator().manual_seed(0))
    assert torch.equal(strip, again)


def test_draw_noised_and_show_trajectory_draw():
    x0 = torch.zeros(4, 1, 8, 8)
    fig, ax = plt.subplots()
    draw_noised(ax, 25, x0, SCHED, torch.randn(4, 1, 8, 8))
    assert ax.get_title() == "t = 25"
    traj = ddim_trajectory(toy_eps, SCHED, torch.randn(2, 1, 8, 8), num_steps=5)
    axes = show_trajectory(traj, n_images=2)
    assert len(axes) == 4
    plt.close("all")


def test_trajectories_match_the_package_samplers():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 1, 2, 2, generator=g)
    traj = ddpm_trajectory(toy_eps, SCHED, x, record=[49, 20, 0], generator=g)
    ref = sample_ddpm(toy_eps, SCHED, (4, 1, 2, 2), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(traj.final, ref)
    assert traj.steps == [49, 20, 0] and traj.grid("x0_pred", 1).shape == (3, 1, 2, 2)
    x = torch.randn(4, 1, 2, 2)
    traj = ddim_trajectory(toy_eps, SCHED, x, num_steps=10)
    torch.testing.assert_close(traj.final, sample_ddim(toy_eps, SCHED, (4, 1, 2, 2), 10, x=x))
    assert traj.steps == [45, 40, 35, 30, 25, 20, 15, 10, 5, 0]


def test_gaussian_eps_is_the_conditional_mean_of_the_noise():
    """E[eps | x_t] by regression on samples agrees with the closed form (a linear function)."""
    g = torch.Generator().manual_seed(0)
    t = 30
    x0 = 0.3 + 0.5 * torch.randn(200_000, generator=g)
    eps = torch.randn(200_000, generator=g)
    xt = SCHED.q_sample(x0, torch.tensor(t), eps)
    design = torch.stack([xt, torch.ones_like(xt)], 1)
    coef = torch.linalg.lstsq(design, eps[:, None]).solution.squeeze()  # eps ~ a x_t + b
    grid = torch.tensor([-1.0, 0.0, 1.0])
    torch.testing.assert_close(coef[0] * grid + coef[1], gaussian_eps(grid, t, SCHED, 0.3, 0.5), atol=0.01, rtol=0)


def test_mixture_eps_reduces_to_gaussian_and_integrates():
    x = torch.linspace(-3, 3, 7)
    torch.testing.assert_close(mixture_eps(x, 10, SCHED, [0.3], [0.5], [1.0]), gaussian_eps(x, 10, SCHED, 0.3, 0.5))
    grid = torch.linspace(-8, 8, 4001, dtype=torch.float64)
    p = mixture_log_prob_t(grid, 5, SCHED, [-1.0, 1.0], [0.2, 0.3], [0.3, 0.7]).exp()
    assert float(torch.trapezoid(p, grid)) == pytest.approx(1.0, abs=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="outside"):
        forward_strip(torch.zeros(1, 1, 2, 2), SCHED, [50])
    with pytest.raises(ValueError, match="sigma"):
        gaussian_eps(torch.zeros(2), 0, SCHED, sigma=0.0)
    with pytest.raises(ValueError, match="one entry per component"):
        mixture_log_prob_t(torch.zeros(2), 0, SCHED, [0.0, 1.0], [1.0], [1.0])
    with pytest.raises(ValueError, match="which"):
        Trajectory(steps=[0], xt=[torch.zeros(1, 1)], x0_pred=[torch.zeros(1, 1)]).grid("noise")
