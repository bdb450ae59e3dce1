"""Tests for aigc_course.text.masking (language-model batches and masked-token corruption)."""

from __future__ import annotations

import pytest
import torch

from aigc_course.text.batches import get_batch, random_windows
from aigc_course.text.masking import IGNORE_INDEX, mask_tokens, masked_lm_batch


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_mask_tokens_shapes_and_targets():
    ids = torch.randint(0, 10, (8, 32), generator=_gen(1))
    inputs, targets = mask_tokens(ids, mask_id=10, p=0.3, generator=_gen())
    assert inputs.shape == targets.shape == ids.shape
    assert inputs.dtype == targets.dtype == ids.dtype
    masked = inputs == 10
    # targets are the original ids exactly where the input was masked, -100 elsewhere
    assert torch.equal(targets[masked], ids[masked])
    assert bool((targets[~masked] == IGNORE_INDEX).all())
    assert torch.equal(inputs[~masked], ids[~masked])


def test_mask_tokens_fraction_close_to_p():
    ids = torch.zeros(200, 500, dtype=torch.long)
    for p in (0.15, 0.5):
        inputs, _ = mask_tokens(ids, mask_id=1, p=p, generator=_gen())
        assert abs((inputs == 1).float().mean().item() - p) < 0.01


def test_mask_tokens_p_one_masks_everything():
    ids = torch.arange(12).view(3, 4)
    inputs, targets = mask_tokens(ids, mask_id=99, p=1.0)
    assert bool((inputs == 99).all())
    assert torch.equal(targets, ids)


def test_mask_tokens_deterministic_under_seed():
    ids = torch.randint(0, 50, (4, 64), generator=_gen(3))
    a = mask_tokens(ids, 50, 0.15, generator=_gen(7))
    b = mask_tokens(ids, 50, 0.15, generator=_gen(7))
    c = mask_tokens(ids, 50, 0.15, generator=_gen(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


@pytest.mark.parametrize("p", [0.0, -0.1, 1.5])
def test_mask_tokens_bad_p_raises(p):
    with pytest.raises(ValueError, match="probability"):
        mask_tokens(torch.zeros(2, 3, dtype=torch.long), mask_id=1, p=p)


def test_mask_tokens_rejects_existing_mask_id_and_floats():
    with pytest.raises(ValueError, match="mask_id"):
        mask_tokens(torch.tensor([[0, 1, 2]]), mask_id=2)
    with pytest.raises(ValueError, match="integer"):
        mask_tokens(torch.zeros(2, 3), mask_id=5)


def test_random_windows_are_contiguous_slices():
    data = torch.arange(100)
    w = random_windows(data, 16, 5, generator=_gen())
    assert w.shape == (5, 16)
    assert bool((w[:, 1:] - w[:, :-1] == 1).all())  # consecutive tokens of the data
    assert torch.equal(w, random_windows(data, 16, 5, generator=_gen()))
    assert random_windows(data, 100, 2).shape == (2, 100)  # the whole sequence fits


def test_random_windows_bad_input_raises():
    with pytest.raises(ValueError, match="longer"):
        random_windows(torch.arange(10), 11, 2)
    with pytest.raises(ValueError, match="1-D"):
        random_windows(torch.zeros(2, 10, dtype=torch.long), 4, 2)
    with pytest.raises(ValueError, match=">= 1"):
        random_windows(torch.arange(10), 0, 2)


def test_next_token_batch_shifts_by_one():
    x, y = get_batch(torch.arange(50), block_size=8, batch_size=3, generator=_gen())
    assert x.shape == y.shape == (3, 8)
    assert torch.equal(y, x + 1)


def test_masked_lm_batch():
    data = torch.randint(0, 20, (1000,), generator=_gen(2))
    x, y = masked_lm_batch(data, block_size=32, batch_size=16, mask_id=20, p=0.15, generator=_gen())
    assert x.shape == y.shape == (16, 32)
    masked = x == 20
    assert masked.any()
    assert bool((y[~masked] == IGNORE_INDEX).all())
    assert bool(((y[masked] >= 0) & (y[masked] < 20)).all())
