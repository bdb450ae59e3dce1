"""Tests for aigc_course.text.batches: language-model windows and the held-out loss estimate."""

from __future__ import annotations

import math

import pytest
import torch

from aigc_course.models import GPT, GPTConfig
from aigc_course.text.batches import batch_fn, estimate_loss, get_batch

DATA = torch.arange(100)  # ids equal to positions: easy to check windows


def test_shapes_and_dtype():
    x, y = get_batch(DATA, block_size=8, batch_size=5, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 8)
    assert x.dtype == y.dtype == DATA.dtype


def test_windows_are_contiguous_and_y_is_x_shifted_by_one():
    x, y = get_batch(DATA, block_size=8, batch_size=16, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(x[:, 1:], y[:, :-1])
    torch.testing.assert_close(y, x + 1)  # DATA[i] == i, so the target is the next id
    torch.testing.assert_close(x[:, 1:] - x[:, :-1], torch.ones(16, 7, dtype=torch.long))
    assert int(y.max()) <= len(DATA) - 1


def test_every_start_position_is_reachable():
    # block_size = len - 1 leaves exactly one window, starting at 0
    x, y = get_batch(DATA, block_size=99, batch_size=3)
    torch.testing.assert_close(x, DATA[:99].expand(3, 99))
    torch.testing.assert_close(y, DATA[1:].expand(3, 99))


def test_determinism_under_a_seed():
    a = get_batch(DATA, 8, 4, torch.Generator().manual_seed(7))
    b = get_batch(DATA, 8, 4, torch.Generator().manual_seed(7))
    c = get_batch(DATA, 8, 4, torch.Generator().manual_seed(8))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a[0], c[0])


def test_batch_fn_repeats_and_advances():
    f1, f2 = batch_fn(DATA, 8, 4, seed=3), batch_fn(DATA, 8, 4, seed=3)
    first, second = f1(0), f1(1)
    torch.testing.assert_close(first, f2(0))
    assert not torch.equal(first[0], second[0])


@pytest.mark.parametrize("block_size", [100, 150])
def test_block_size_too_large_raises(block_size):
    with pytest.raises(ValueError, match="block_size"):
        get_batch(DATA, block_size, 2)
    with pytest.raises(ValueError, match="block_size"):
        batch_fn(DATA, block_size, 2)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="1-D"):
        get_batch(DATA.view(10, 10), 4, 2)
    with pytest.raises(ValueError, match="1-D"):
        get_batch(list(range(10)), 4, 2)
    with pytest.raises(ValueError, match=">= 1"):
        get_batch(DATA, 0, 2)
    with pytest.raises(ValueError, match=">= 1"):
        get_batch(DATA, 4, 0)


def test_estimate_loss_is_deterministic_and_near_uniform_at_init():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=100, block_size=8, n_layer=1, n_head=2, n_embd=16))
    model.train()
    a = estimate_loss(model, DATA, 8, 4, n_batches=3, seed=0)
    b = estimate_loss(model, DATA, 8, 4, n_batches=3, seed=0)
    assert a == b
    assert model.training  # the mode is restored
    assert abs(a - math.log(100)) < 0.2  # an untrained model predicts about uniformly
    with pytest.raises(ValueError, match="n_batches"):
        estimate_loss(model, DATA, 8, 4, n_batches=0)
