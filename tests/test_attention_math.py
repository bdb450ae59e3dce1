"""Tests for aigc_course.maths.attention (chapters 4.1 and 4.2)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from aigc_course.maths.attention import (
    attention_flops,
    causal_mask,
    loglog_slope,
    merge_heads,
    perplexity,
    relative_rotation,
    rope,
    scaled_dot_product_attention,
    sequence_log_prob,
    sinusoidal_positions,
    split_heads,
    time_attention,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape", [(5, 8), (2, 7, 16), (3, 4, 10, 32), (1, 2, 1, 4)])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_equals_torch(shape, causal):
    q, k, v = (torch.randn(*shape, generator=_gen(i)) for i in range(3))
    out, w = scaled_dot_product_attention(q, k, v, causal=causal)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=causal))
    assert w.shape == (*shape[:-1], shape[-2])
    torch.testing.assert_close(w.sum(-1), torch.ones(shape[:-1]))
    if causal:  # nothing attends to the future
        T = shape[-2]
        assert bool((w[..., ~causal_mask(T)] == 0).all())


def test_attention_masks_and_cross_attention_equal_torch():
    q = torch.randn(2, 3, 6, 8, generator=_gen(1))
    k, v = torch.randn(2, 3, 9, 8, generator=_gen(2)), torch.randn(2, 3, 9, 5, generator=_gen(3))
    bool_mask = torch.rand(6, 9, generator=_gen(4)) > 0.3
    bool_mask[:, 0] = True  # every query keeps at least one key
    float_mask = torch.randn(6, 9, generator=_gen(5))
    for mask in (bool_mask, float_mask):
        out, _ = scaled_dot_product_attention(q, k, v, mask=mask)
        torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


def test_attention_gradients_equal_torch():
    q, k, v = (torch.randn(2, 5, 8, generator=_gen(i), requires_grad=True) for i in range(3))
    scaled_dot_product_attention(q, k, v, causal=True)[0].square().sum().backward()
    ours = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    F.scaled_dot_product_attention(q, k, v, is_causal=True).square().sum().backward()
    for a, t in zip(ours, (q, k, v)):
        torch.testing.assert_close(a, t.grad)


def test_scaling_keeps_logit_variance_near_one():
    g = _gen(0)
    for d in (4, 64, 512):
        q, k = torch.randn(20000, d, generator=g), torch.randn(20000, d, generator=g)
        raw = (q * k).sum(-1)
        assert abs(raw.var().item() / d - 1) < 0.05  # Var(q . k) = d
        assert abs((raw / math.sqrt(d)).var().item() - 1) < 0.05


def test_split_merge_roundtrip_and_errors():
    x = torch.randn(2, 5, 12, generator=_gen())
    h = split_heads(x, 3)
    assert h.shape == (2, 3, 5, 4)
    torch.testing.assert_close(h[:, 1], x[..., 4:8])  # head i owns columns i*hs..(i+1)*hs
    torch.testing.assert_close(merge_heads(h), x)
    with pytest.raises(ValueError, match="divisible"):
        split_heads(x, 5)
    with pytest.raises(ValueError, match="B, T, C"):
        split_heads(x[0], 3)
    with pytest.raises(ValueError, match="n_head"):
        merge_heads(x)


def test_sinusoidal_positions_values_and_bounds():
    pe = sinusoidal_positions(50, 16)
    assert pe.shape == (50, 16) and pe.dtype == torch.float32
    assert bool((pe.abs() <= 1).all())
    torch.testing.assert_close(pe[0, 0::2], torch.zeros(8))  # sin 0
    torch.testing.assert_close(pe[0, 1::2], torch.ones(8))  # cos 0
    assert pe[7, 2].item() == pytest.approx(math.sin(7 / 10000 ** (2 / 16)), abs=1e-6)
    # each (sin, cos) pair lies on the unit circle
    torch.testing.assert_close(pe[:, 0::2] ** 2 + pe[:, 1::2] ** 2, torch.ones(50, 8))


@pytest.mark.parametrize("offset", [1, 5, 17])
def test_sinusoidal_relative_rotation(offset):
    pe = sinusoidal_positions(64, 32)
    R = relative_rotation(offset, 32)
    # PE[t + k] = R_k PE[t] for every t, with one R_k for all t
    torch.testing.assert_close(pe[offset:], pe[:-offset] @ R.T, atol=1e-5, rtol=0)
    torch.testing.assert_close(R @ R.T, torch.eye(32), atol=1e-6, rtol=0)  # a rotation
    # the dot product of two encodings depends on the offset only
    dots = (pe[offset:] * pe[:-offset]).sum(-1)
    torch.testing.assert_close(dots, dots[:1].expand_as(dots), atol=1e-4, rtol=0)


def test_rope_relative_property_and_norm():
    d, T = 16, 12
    q, k = torch.randn(d, generator=_gen(1)), torch.randn(d, generator=_gen(2))
    rq = rope(q.expand(T, d))  # the same query placed at every position
    rk = rope(k.expand(T, d))
    scores = rq @ rk.T  # (T, T): scores[m, n] = <R_m q, R_n k>
    for offset in (0, 1, 4):
        diag = torch.diagonal(scores, offset=offset)
        torch.testing.assert_close(diag, diag[:1].expand_as(diag), atol=1e-5, rtol=0)
    torch.testing.assert_close(rq.norm(dim=-1), q.norm().expand(T))  # rotations keep lengths
    torch.testing.assert_close(rope(q.expand(T, d))[0], q)  # position 0: no rotation
    with pytest.raises(ValueError, match="positions"):
        rope(q.expand(T, d), positions=torch.arange(T + 1))


def test_positions_bad_input():
    with pytest.raises(ValueError, match="even"):
        sinusoidal_positions(10, 7)
    with pytest.raises(ValueError, match="positive"):
        sinusoidal_positions(0, 8)


def test_sequence_log_prob_equals_cross_entropy():
    logits = torch.randn(3, 9, 11, generator=_gen())
    ids = torch.randint(0, 11, (3, 9), generator=_gen(1))
    lp = sequence_log_prob(logits, ids)
    assert lp.shape == (3,)
    ce_sum = F.cross_entropy(logits.reshape(-1, 11), ids.reshape(-1), reduction="none").view(3, 9).sum(-1)
    torch.testing.assert_close(lp, -ce_sum)
    torch.testing.assert_close(sequence_log_prob(logits[0], ids[0]), lp[0])
    ce_mean = F.cross_entropy(logits.reshape(-1, 11), ids.reshape(-1))
    assert perplexity(logits, ids) == pytest.approx(math.exp(ce_mean.item()), rel=1e-5)


def test_uniform_model_perplexity_is_vocab_size():
    logits = torch.zeros(4, 20, 37)
    ids = torch.randint(0, 37, (4, 20), generator=_gen())
    assert perplexity(logits, ids) == pytest.approx(37, rel=1e-5)


def test_sequence_log_prob_bad_input():
    logits = torch.randn(2, 5, 7)
    with pytest.raises(ValueError, match="vocabulary dim"):
        sequence_log_prob(logits, torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        sequence_log_prob(logits, torch.zeros(2, 5))
    with pytest.raises(ValueError, match=r"\[0, 7\)"):
        sequence_log_prob(logits, torch.full((2, 5), 7))


def test_attention_bad_input():
    x = torch.randn(4, 8)
    with pytest.raises(ValueError, match="d_k"):
        scaled_dot_product_attention(x, torch.randn(4, 6), torch.randn(4, 6))
    with pytest.raises(ValueError, match="T_k"):
        scaled_dot_product_attention(x, x, torch.randn(5, 8))
    with pytest.raises(ValueError, match="causal"):
        scaled_dot_product_attention(x, torch.randn(6, 8), torch.randn(6, 8), causal=True)
    with pytest.raises(ValueError, match="2 dims"):
        scaled_dot_product_attention(x[0], x[0], x[0])


def test_time_attention_and_flops():
    res = time_attention([8, 32], d=16, n_head=2, repeats=2)
    assert [r.T for r in res] == [8, 32]
    assert all(r.seconds > 0 for r in res)
    assert res[1].flops == 16 * res[0].flops == attention_flops(32, 16, 2)
    assert res[1].weight_bytes == 2 * 32 * 32 * 4
    before = torch.get_num_threads()
    time_attention([4], d=4, repeats=1, num_threads=1)
    assert torch.get_num_threads() == before  # the thread setting is restored
    with pytest.raises(ValueError, match="repeats"):
        time_attention([8], d=4, repeats=0)


def test_loglog_slope():
    xs = [1, 2, 4, 8, 16]
    assert loglog_slope(xs, [3 * x**2 for x in xs]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="positive"):
        loglog_slope([1, 2], [0, 1])
