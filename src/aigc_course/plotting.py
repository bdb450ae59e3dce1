"""Figures in one consistent style: image grids, loss curves, 2D samples.

Used by every chapter. Each function draws on an ``ax`` you pass (or a new figure) and returns
the axes, so figures compose (``fig, axes = plt.subplots(1, 4)`` then one call per panel).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

PALETTE = ["#3b6ea8", "#e07b39", "#3a9a5b", "#c0392b", "#7d5ba6", "#8c6d46", "#d16ba5", "#6b6b6b"]


def use_style() -> None:
    """The course style: readable fonts, light grid, a colour-blind-friendly cycle."""
    plt.rcParams.update({
        "figure.figsize": (6.4, 4.0),
        "figure.dpi": 100,
        "savefig.dpi": 120,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlesize": 11,
        "axes.labelsize": 10,
        "legend.frameon": False,
        "axes.prop_cycle": plt.cycler(color=PALETTE),
        "image.cmap": "gray",
    })


def _ax(ax, figsize=None):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def make_grid(images: torch.Tensor, nrow: int = 8, pad: int = 2, value_range=(-1.0, 1.0)) -> np.ndarray:
    """Tile images (N, C, H, W) or (N, H, W) into one array (rows*H, cols*W[, 3]) in [0, 1]."""
    x = images.detach().float().cpu()
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4:
        raise ValueError(f"make_grid expects (N, C, H, W) or (N, H, W), got {tuple(images.shape)}.")
    lo, hi = value_range
    x = ((x - lo) / (hi - lo)).clamp(0, 1)
    n, c, h, w = x.shape
    ncol = min(nrow, n)
    nrows = math.ceil(n / ncol)
    grid = torch.ones(c, nrows * (h + pad) + pad, ncol * (w + pad) + pad)
    for i in range(n):
        r, col = divmod(i, ncol)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = x[i]
    grid = grid.permute(1, 2, 0).numpy()  # (C, H, W) -> (H, W, C) for imshow
    return grid[..., 0] if c == 1 else grid


def show_images(images: torch.Tensor, nrow: int = 8, title: str | None = None, ax=None,
                value_range=(-1.0, 1.0), labels=None):
    """Show a grid of images; ``labels`` (one per image) are written under the grid as text."""
    grid = make_grid(images, nrow=nrow, value_range=value_range)
    ax = _ax(ax, figsize=(min(nrow, len(images)) * 0.8 + 0.4, math.ceil(len(images) / nrow) * 0.8 + 0.5))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    if labels is not None:
        ncol = min(nrow, len(images))
        rows = [" ".join(str(v) for v in labels[i : i + ncol]) for i in range(0, len(labels), ncol)]
        ax.text(0.5, -0.02, "\n".join(rows), transform=ax.transAxes, ha="center", va="top", fontsize=8)
    return ax


def plot_losses(histories, labels=None, smooth: int = 20, ax=None, log: bool = False,
                title: str | None = None, xlabel: str = "step", ylabel: str = "loss"):
    """Plot one or several :class:`~aigc_course.train.History` (smoothed train loss, evals)."""
    if not isinstance(histories, (list, tuple)):
        histories = [histories]
    labels = labels or [None] * len(histories)
    ax = _ax(ax)
    for h, label, color in zip(histories, labels, PALETTE * 4):
        ax.plot(h.steps, h.smoothed(smooth), color=color, label=f"{label} (train)" if label else "train")
        for key in sorted({k for e in h.evals for k in e if k != "step"}):
            pts = [(e["step"], e[key]) for e in h.evals if key in e]
            ax.plot(*zip(*pts), "o--", color=color, alpha=0.8, label=f"{label} ({key})" if label else key)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend()
    return ax


def scatter_2d(points: torch.Tensor, ax=None, title: str | None = None, lim: float = 3.0,
               s: float = 3.0, alpha: float = 0.5, color=None):
    """Scatter (N, 2) samples on square axes with a fixed range, for side-by-side comparison."""
    p = points.detach().float().cpu()
    if p.dim() != 2 or p.shape[1] != 2:
        raise ValueError(f"scatter_2d expects (N, 2) points, got {tuple(points.shape)}.")
    ax = _ax(ax, figsize=(3.2, 3.2))
    ax.scatter(p[:, 0], p[:, 1], s=s, alpha=alpha, color=color or PALETTE[0], linewidths=0)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return ax
