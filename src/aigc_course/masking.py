"""Batches for language models: random training windows and masked-token corruption.

Taught in part 2, "Transformers and large language models", where the same Transformer is
trained two ways on one corpus:

1. autoregressive (GPT, Radford et al., 2018/2019): a window of T + 1 tokens gives the inputs
   ``w[:, :-1]`` and the next-token targets ``w[:, 1:]``;
2. masked (BERT, Devlin et al., 2019): a window of T tokens is corrupted by :func:`mask_tokens`,
   which hides a fraction ``p`` of the tokens behind a ``[MASK]`` id and keeps the original
   tokens as targets at those positions only (-100 elsewhere, the ``ignore_index`` of
   ``F.cross_entropy``).

BERT also replaces 10% of the chosen tokens with a random token and leaves 10% unchanged (the
"80/10/10" rule); this module uses the plain rule (every chosen token becomes ``[MASK]``), which
is what the chapter teaches; the 80/10/10 variant is one of its exercises.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100  # targets with this value are skipped by F.cross_entropy


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
    starts = torch.randint(0, len(data) - length + 1, (batch_size,), generator=generator)  # (B,)
    offsets = torch.arange(length)  # (T,)
    return data[starts[:, None] + offsets[None, :]]  # (B, T)


def next_token_batch(data: torch.Tensor, block_size: int, batch_size: int,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs x (B, T) and targets y (B, T) with y[:, t] = x[:, t + 1] (the next token)."""
    w = random_windows(data, block_size + 1, batch_size, generator)  # (B, T + 1)
    return w[:, :-1], w[:, 1:]


def mask_tokens(ids: torch.Tensor, mask_id: int, p: float = 0.15,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Hide each token with probability ``p``: the masked-language-model corruption.

    Args:
        ids: token ids of any shape, e.g. (B, T).
        mask_id: the id of the ``[MASK]`` token (outside the ids of real tokens).
        p: the probability that a token is masked, 0 < p <= 1 (BERT uses 0.15).
        generator: makes the choice of positions reproducible.

    Returns:
        ``(inputs, targets)``, both shaped like ``ids``: inputs are ``ids`` with the chosen
        positions replaced by ``mask_id``; targets are the original ids at the chosen positions
        and -100 (ignored by the loss) everywhere else.
    """
    if not 0.0 < p <= 1.0:
        raise ValueError(f"The masking probability p must be in (0, 1], got {p}.")
    if ids.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"ids must be integer token ids, got dtype {ids.dtype}.")
    if bool((ids == mask_id).any()):
        raise ValueError(f"ids already contain mask_id={mask_id}; it must be a new token id.")
    chosen = torch.rand(ids.shape, generator=generator) < p  # (B, T) True where masked
    chosen = chosen.to(ids.device)
    inputs = ids.masked_fill(chosen, mask_id)
    targets = ids.masked_fill(~chosen, IGNORE_INDEX)
    return inputs, targets


def masked_lm_batch(data: torch.Tensor, block_size: int, batch_size: int, mask_id: int,
                    p: float = 0.15, generator: torch.Generator | None = None,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of ``block_size`` tokens, corrupted by :func:`mask_tokens`."""
    w = random_windows(data, block_size, batch_size, generator)  # (B, T)
    return mask_tokens(w, mask_id, p, generator)
