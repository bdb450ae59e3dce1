"""Two-dimensional toy distributions: small enough to fit any generative model in seconds.

Taught in part 2, "Generative model families side by side". Every sampler takes ``n`` and a
``torch.Generator`` (or seed) so that a figure repeats exactly.
"""

from __future__ import annotations

import math

import torch

TOY_2D = ("two_moons", "eight_gaussians", "spiral", "checkerboard", "rings")


def _gen(seed) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(0 if seed is None else int(seed))


def toy_2d(name: str, n: int = 2000, seed=0, noise: float | None = None) -> torch.Tensor:
    """Sample ``n`` points of a 2D toy distribution as a float tensor (n, 2), roughly in [-3, 3]."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}.")
    g = _gen(seed)
    if name == "two_moons":
        noise = 0.08 if noise is None else noise
        k = torch.randint(0, 2, (n,), generator=g)
        a = torch.rand(n, generator=g) * math.pi
        x = torch.stack([torch.cos(a), torch.sin(a)], 1)
        lower = torch.stack([1 - torch.cos(a), 0.5 - torch.sin(a)], 1)
        x = torch.where(k[:, None] == 1, lower, x)
        x = (x - torch.tensor([0.5, 0.25])) * 1.6
    elif name == "eight_gaussians":
        noise = 0.15 if noise is None else noise
        k = torch.randint(0, 8, (n,), generator=g).float()
        x = 2.0 * torch.stack([torch.cos(k * math.pi / 4), torch.sin(k * math.pi / 4)], 1)
    elif name == "spiral":
        noise = 0.1 if noise is None else noise
        r = torch.sqrt(torch.rand(n, generator=g)) * 3 * math.pi
        x = torch.stack([r * torch.cos(r), r * torch.sin(r)], 1) / (math.pi * 1.1)
    elif name == "checkerboard":
        noise = 0.0 if noise is None else noise
        x1 = torch.rand(n, generator=g) * 4 - 2
        x2 = torch.rand(n, generator=g) - torch.randint(0, 2, (n,), generator=g).float() * 2
        x2 = x2 + torch.floor(x1) % 2
        x = torch.stack([x1, x2], 1) * 1.25
    elif name == "rings":
        noise = 0.06 if noise is None else noise
        k = torch.randint(1, 3, (n,), generator=g).float()
        a = torch.rand(n, generator=g) * 2 * math.pi
        x = torch.stack([torch.cos(a), torch.sin(a)], 1) * k[:, None] * 1.2
    else:
        raise ValueError(f"Unknown toy distribution {name!r}. Known: {', '.join(TOY_2D)}.")
    if noise:
        x = x + noise * torch.randn(x.shape, generator=g)
    return x
