"""Masked-token corruption: the training batches of a masked language model (BERT).

Taught in part 2, "Transformers and large language models", where the same Transformer is
trained two ways on one corpus:

1. autoregressive (GPT, Radford et al., 2018/2019): a window of T + 1 tokens gives the inputs
   ``w[:, :-1]`` and the next-token targets ``w[:, 1:]`` (:func:`aigc_course.text.batches.get_batch`);
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

from aigc_course.runtime import rand
from aigc_course.text.batches import random_windows

IGNORE_INDEX = -100  # targets with this value are skipped by F.cross_entropy


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
    chosen = rand(ids.shape, generator) < p  # (B, T) True where masked; drawn on the generator's device
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
