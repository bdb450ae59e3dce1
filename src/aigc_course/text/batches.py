"""Batches of training windows for a language model, and a held-out loss estimate.

Taught in part 1, "1.2 Why now: algorithms, data, compute and demand", where a character-level
GPT is trained on 1%, 10% and 100% of Shakespeare and at three sizes; reused by the language
chapters of parts 2-5.

A language model learns to predict token t+1 from tokens 0..t. From one long sequence of ids
``data`` we cut random contiguous windows of ``block_size + 1`` tokens:

1. draw ``batch_size`` start positions i uniformly from 0 .. len(data) - block_size - 1;
2. the input is x = data[i : i + block_size];
3. the target is the same window shifted by one, y = data[i + 1 : i + block_size + 1],

so every position of a window is a training example (nanoGPT's ``get_batch``). The window
cutter :func:`random_windows` also feeds the masked language model of :mod:`.masking`.
"""

from __future__ import annotations

import torch

from aigc_course.checkpoint import state_text, text_state
from aigc_course.runtime import randint


def _check(data: torch.Tensor, block_size: int, batch_size: int) -> None:
    if not torch.is_tensor(data) or data.dim() != 1:
        shape = tuple(data.shape) if torch.is_tensor(data) else type(data).__name__
        raise ValueError(f"data must be a 1-D tensor of token ids, got {shape}.")
    if block_size < 1 or batch_size < 1:
        raise ValueError(f"block_size and batch_size must be >= 1, got {block_size} and {batch_size}.")
    if block_size >= len(data):
        raise ValueError(
            f"block_size={block_size} needs at least block_size + 1 = {block_size + 1} tokens "
            f"(one window plus its shifted target), but data has only {len(data)}."
        )


def random_windows(data: torch.Tensor, length: int, batch_size: int,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """``batch_size`` windows of ``length`` consecutive tokens at random offsets of ``data``.

    Args:
        data: a 1-D tensor of token ids (N,).
        length: tokens per window; use ``block_size + 1`` for next-token prediction.
        generator: makes the offsets reproducible.

    Returns:
        A (batch_size, length) tensor of the same dtype as ``data``.
    """
    if data.dim() != 1:
        raise ValueError(f"data must be a 1-D tensor of token ids, got shape {tuple(data.shape)}.")
    if length < 1 or batch_size < 1:
        raise ValueError(f"length and batch_size must be >= 1, got {length} and {batch_size}.")
    if length > len(data):
        raise ValueError(f"Window length {length} is longer than the data ({len(data)} tokens).")
    starts = randint(len(data) - length + 1, (batch_size,), generator)  # (B,), on the generator's device, then the CPU
    offsets = torch.arange(length)  # (T,)
    return data[starts[:, None] + offsets[None, :]]  # (B, T)


def get_batch(data: torch.Tensor, block_size: int, batch_size: int,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows ``(x, y)`` of shape (batch_size, block_size) with ``y`` = ``x`` shifted by one.

    Args:
        data: token ids, a 1-D long tensor of length > block_size.
        generator: a seeded ``torch.Generator`` makes the batches repeat exactly.
    """
    _check(data, block_size, batch_size)
    w = random_windows(data, block_size + 1, batch_size, generator)  # (B, T + 1)
    return w[:, :-1], w[:, 1:]


class WindowBatches:
    """``step -> (x, y)``: what :func:`batch_fn` returns. ``state_dict`` / ``load_state_dict``
    save and restore its generator, so ``train.fit`` resumes the stream of windows exactly."""

    def __init__(self, data: torch.Tensor, block_size: int, batch_size: int, generator: torch.Generator):
        self.data, self.block_size, self.batch_size, self.generator = data, block_size, batch_size, generator

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return get_batch(self.data, self.block_size, self.batch_size, self.generator)

    def state_dict(self) -> dict:
        return {"generator": state_text(self.generator.get_state())}

    def load_state_dict(self, state: dict) -> None:
        if "generator" in state:
            self.generator.set_state(text_state(state["generator"]))


def batch_fn(data: torch.Tensor, block_size: int, batch_size: int, seed: int = 0) -> WindowBatches:
    """A function ``step -> (x, y)`` with its own seeded generator, ready for ``train.fit``
    (under DDP the batch is the global one; ``fit`` gives each rank its shard)."""
    _check(data, block_size, batch_size)
    return WindowBatches(data, block_size, batch_size, torch.Generator().manual_seed(seed))


@torch.no_grad()
def estimate_loss(model: torch.nn.Module, data: torch.Tensor, block_size: int, batch_size: int,
                  n_batches: int, seed: int = 0) -> float:
    """Mean next-token cross-entropy (nats per token) of ``model`` on ``n_batches`` random windows.

    The windows come from a generator seeded with ``seed``, so calling it twice (or on two models)
    scores exactly the same text: differences are the model's, not the sample's. ``model(x, y)``
    must return ``(logits, loss)`` like :class:`aigc_course.models.GPT`.
    """
    if n_batches < 1:
        raise ValueError(f"n_batches must be >= 1, got {n_batches}.")
    gen = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = 0.0
    for _ in range(n_batches):
        x, y = get_batch(data, block_size, batch_size, gen)
        _, loss = model(x.to(device), y.to(device))
        total += float(loss)
    model.train(was_training)
    return total / n_batches
