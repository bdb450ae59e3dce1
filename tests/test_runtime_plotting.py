"""Mode, device, seed, plotting and widgets."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import aigc_course as ac  # noqa: E402
from aigc_course.plotting import make_grid, plot_losses, scatter_2d, show_images  # noqa: E402
from aigc_course.train import History  # noqa: E402
from aigc_course.widgets import interactive_figure, static_panels  # noqa: E402


def test_modes(monkeypatch):
    monkeypatch.setenv("AIGC_FAST", "1")
    assert ac.is_fast() and ac.pick(1, 2) == 1
    monkeypatch.setenv("AIGC_FAST", "0")
    assert not ac.is_fast() and ac.pick(1, 2) == 2
    monkeypatch.setenv("AIGC_DEVICE", "cpu")
    assert ac.get_device().type == "cpu"


def test_seed_repeats_and_setup():
    ac.set_seed(5)
    a = torch.randn(3)
    ac.set_seed(5)
    assert torch.equal(a, torch.randn(3))
    env = ac.setup(seed=1)
    assert env.seed == 1 and "device=" in str(env)


def test_autocast_is_noop_on_cpu():
    with ac.autocast("cpu"):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32


def test_make_grid_shapes_and_range():
    g = make_grid(torch.zeros(10, 1, 28, 28), nrow=5, pad=2)
    assert g.shape == (2 * 30 + 2, 5 * 30 + 2) and g.min() >= 0 and g.max() <= 1
    rgb = make_grid(torch.rand(4, 3, 8, 8), nrow=2, value_range=(0, 1))
    assert rgb.shape == (2 * 10 + 2, 2 * 10 + 2, 3)
    with pytest.raises(ValueError):
        make_grid(torch.zeros(28, 28))


def test_plots_return_axes():
    ax = show_images(torch.rand(6, 1, 28, 28), nrow=3, labels=list(range(6)))
    assert ax.images
    h = History(steps=list(range(50)), loss=[1 / (i + 1) for i in range(50)], evals=[{"step": 49, "val": 0.1}])
    ax = plot_losses([h], labels=["run"])
    assert len(ax.lines) == 2
    ax = scatter_2d(torch.randn(100, 2))
    assert ax.collections
    with pytest.raises(ValueError):
        scatter_2d(torch.randn(10, 3))
    plt.close("all")


def test_widget_static_fallback_in_book(monkeypatch):
    monkeypatch.setenv("AIGC_BOOK", "1")
    seen = []

    def draw(ax, t):
        seen.append(t)
        ax.plot([0, t])

    fig = interactive_figure(draw, "t", [1, 2, 3, 4, 5])
    assert seen == [1, 3, 5] and len(fig.axes) == 3
    fig = static_panels(draw, "t", [7, 8])
    assert fig.axes[1].get_title() == "t = 8"
    with pytest.raises(ValueError):
        interactive_figure(draw, "t", [])
    plt.close("all")


def test_random_draws_follow_the_generator_and_land_on_the_device():
    """runtime's draws equal torch's own with the same seed, on the CPU, and honour device and dtype."""
    from aigc_course import runtime

    def g():
        return torch.Generator().manual_seed(0)

    torch.testing.assert_close(runtime.randn((3, 4), g(), "cpu"), torch.randn(3, 4, generator=g()))
    assert runtime.randn((2,), g(), "cpu", dtype=torch.float64).dtype == torch.float64
    assert torch.equal(runtime.randint(7, (5,), g(), "cpu"), torch.randint(0, 7, (5,), generator=g()))
    torch.testing.assert_close(runtime.rand((4,), g()), torch.rand(4, generator=g()))
    probs = torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.5, 0.0]])
    assert torch.equal(runtime.multinomial(probs, 4, g(), replacement=True),
                       torch.multinomial(probs, 4, True, generator=g()))
    assert torch.equal(runtime.bernoulli(probs, g()), torch.bernoulli(probs, generator=g()))
    assert runtime.randn((2,), None, "meta").device.type == "meta"  # the result lands on the device asked for
