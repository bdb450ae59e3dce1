"""Mode, device and seed: the three facts every notebook sets in its first cell.

Taught in "How to use this course" (book/setup.md). Two modes:

* fast mode (``AIGC_FAST=1``): every notebook shrinks its workload so it runs on a CPU in
  seconds; CI uses it.
* full mode (the default): real training, on a GPU when there is one.
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import numpy as np
import torch

_TRUE = {"1", "true", "yes", "on"}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def is_fast() -> bool:
    """True when ``AIGC_FAST`` is set: notebooks then use their small CI workload."""
    return _env_flag("AIGC_FAST")


def is_quiet() -> bool:
    """True in CI (``CI`` set) or when ``AIGC_QUIET`` is set: progress bars are hidden."""
    return _env_flag("CI") or _env_flag("AIGC_QUIET")


def in_book_build() -> bool:
    """True while the book is being built (``AIGC_BOOK=1``): widgets draw static figures."""
    return _env_flag("AIGC_BOOK")


def pick(fast, full):
    """Return ``fast`` in fast mode and ``full`` otherwise: ``steps = pick(50, 3000)``."""
    return fast if is_fast() else full


def get_device(prefer: str | None = None) -> torch.device:
    """CUDA if available, then Apple MPS, then CPU. ``prefer`` (or ``AIGC_DEVICE``) overrides.

    Under ``torchrun`` (``LOCAL_RANK`` set) each process gets its own GPU, ``cuda:LOCAL_RANK``
    (chapter 5.15)."""
    prefer = prefer or os.environ.get("AIGC_DEVICE")
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        local_rank = os.environ.get("LOCAL_RANK")
        return torch.device(f"cuda:{int(local_rank)}") if local_rank is not None else torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (all devices) so a run repeats exactly on one machine."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def randn(shape, generator: torch.Generator | None = None, device: torch.device | str | None = None,
          dtype: torch.dtype | None = None) -> torch.Tensor:
    """Standard normal noise of ``shape`` on ``device``, drawn on the generator's own device.

    ``torch.randn(..., generator=g, device=d)`` fails when g and d differ (a CPU generator and
    a CUDA model, or the reverse), so the draw happens where the generator lives and the result
    is moved. A seeded CPU generator therefore gives the same noise whatever the model's device.
    ``dtype`` is that of the draw itself (float64 noise is not float32 noise cast), as in
    diffusers' ``randn_tensor``.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    where = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=where, dtype=dtype).to(device)


def randint(high: int, shape, generator: torch.Generator | None = None,
            device: torch.device | str | None = None) -> torch.Tensor:
    """Integers uniform in [0, high) of ``shape`` on ``device``, drawn on the generator's device
    (as :func:`randn`)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    where = generator.device if generator is not None else device
    return torch.randint(0, high, tuple(shape), generator=generator, device=where).to(device)


def rand(shape, generator: torch.Generator | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """Uniform noise in [0, 1) of ``shape`` on ``device``, drawn on the generator's device (as :func:`randn`)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    where = generator.device if generator is not None else device
    return torch.rand(tuple(shape), generator=generator, device=where).to(device)


def multinomial(probs: torch.Tensor, num_samples: int, generator: torch.Generator | None = None,
                replacement: bool = False) -> torch.Tensor:
    """``torch.multinomial`` drawn on the generator's device, returned on the device of ``probs``:
    a CPU generator also samples from a model on CUDA, and a CUDA one from a model on the CPU."""
    where = generator.device if generator is not None else probs.device
    return torch.multinomial(probs.to(where), num_samples, replacement, generator=generator).to(probs.device)


def bernoulli(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``torch.bernoulli(probs)`` drawn on the generator's device, returned on the device of ``probs``."""
    where = generator.device if generator is not None else probs.device
    return torch.bernoulli(probs.to(where), generator=generator).to(probs.device)


def autocast(device: torch.device | str):
    """Mixed precision on CUDA (bf16 where supported, else fp16); a no-op elsewhere.

    Returns a context manager. fp16 needs a gradient scaler; :func:`aigc_course.train.fit`
    creates one when :func:`amp_dtype` says fp16.
    """
    dtype = amp_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)


def amp_dtype(device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype used on ``device``: bf16/fp16 on CUDA, None (full fp32) elsewhere."""
    if torch.device(device).type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@dataclass(frozen=True)
class Setup:
    """What :func:`setup` decided; printed at the top of every notebook."""

    device: torch.device
    fast: bool
    seed: int

    def __str__(self) -> str:
        mode = "fast (AIGC_FAST=1)" if self.fast else "full"
        return f"device={self.device.type}  mode={mode}  seed={self.seed}  torch={torch.__version__}"


def setup(seed: int = 0, style: bool = True) -> Setup:
    """The one call of a notebook's setup cell: seed, device, mode and the plotting style."""
    set_seed(seed)
    if style:
        from aigc_course.plotting import use_style

        use_style()
    return Setup(device=get_device(), fast=is_fast(), seed=seed)


def device_label(device: torch.device | str) -> str:
    """What a weights card records as hardware, e.g. "cpu (x86_64, 2 threads)"."""
    import platform

    return f"{torch.device(device).type} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
