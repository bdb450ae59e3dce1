"""Tests for aigc_course.models.masked_lm (the mini BERT of notebook 5.5)."""

from __future__ import annotations

import pytest
import torch

from aigc_course.models import MaskedLM, MaskedLMConfig, build_model
from aigc_course.models.gpt import Block
from aigc_course.models.masked_lm import bert_mask_tokens, masked_accuracy
from aigc_course.text.masking import IGNORE_INDEX

V, T = 20, 8  # ids 0..17 are words, 18 = [PAD], 19 = [MASK]


def _model(seed: int = 0, **kw) -> MaskedLM:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=V, block_size=T, n_layer=2, n_head=2, n_embd=32, dropout=0.0, pad_id=18)
    cfg.update(kw)
    return MaskedLM(MaskedLMConfig(**cfg))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_config_defaults_and_bad_ids():
    cfg = MaskedLMConfig(vocab_size=50)
    assert cfg.mask_id == 49
    with pytest.raises(ValueError, match="mask_id"):
        MaskedLMConfig(vocab_size=10, mask_id=10)
    with pytest.raises(ValueError, match="different"):
        MaskedLMConfig(vocab_size=10, mask_id=3, pad_id=3)


def test_reuses_the_gpt_block_without_causal_mask():
    m = _model()
    assert all(isinstance(b, Block) for b in m.blocks)
    assert not m.blocks[0].attn.causal
    assert m.lm_head.weight is m.tok_emb.weight


def test_forward_shapes_and_loss():
    m = _model()
    x = torch.randint(0, 18, (3, T), generator=_gen())
    assert m(x).shape == (3, T, V)
    y = torch.full_like(x, IGNORE_INDEX)
    y[:, 2] = x[:, 2]
    logits, loss = m(x, y)
    assert logits.shape == (3, T, V) and loss.dim() == 0
    loss.backward()
    assert all(p.grad is not None for p in m.parameters())


def test_only_masked_positions_are_scored():
    m = _model()
    x = torch.randint(0, 18, (2, T), generator=_gen(1))
    y = torch.full_like(x, IGNORE_INDEX)
    y[0, 3], y[1, 5] = 4, 7
    logits, loss = m(x, y)
    logp = torch.log_softmax(logits, -1)
    expected = -(logp[0, 3, 4] + logp[1, 5, 7]) / 2
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(m.masked_loss(x, y), expected)
    with pytest.raises(ValueError, match="-100"):
        m(x, torch.full_like(x, IGNORE_INDEX))


def test_bidirectional_position_sees_the_future_and_ignores_padding():
    m = _model().eval()
    x = torch.randint(0, 18, (1, T), generator=_gen(2))
    x2 = x.clone()
    x2[0, -1] = (x[0, -1] + 1) % 18
    assert not torch.allclose(m(x)[0, 0], m(x2)[0, 0])  # position 0 sees the last token
    # a sentence padded with [PAD] gives the same logits at its real positions as without padding
    short = x[:, :5]
    padded = torch.cat([short, torch.full((1, 3), 18)], dim=1)
    torch.testing.assert_close(m(short)[0], m(padded)[0, :5], atol=1e-5, rtol=1e-5)


def test_bert_mask_tokens_80_10_10():
    ids = torch.randint(0, 18, (400, 50), generator=_gen(3))
    ids[:, -5:] = 18  # padding is never chosen
    inputs, targets = bert_mask_tokens(ids, mask_id=19, vocab_size=V, p=0.5, special_ids=(18,),
                                       generator=_gen(4))
    chosen = targets != IGNORE_INDEX
    assert not bool(chosen[:, -5:].any())
    assert bool((inputs[:, -5:] == 18).all())
    assert torch.equal(targets[chosen], ids[chosen])
    assert torch.equal(inputs[~chosen], ids[~chosen])
    frac_mask = (inputs[chosen] == 19).float().mean().item()
    frac_same = (inputs[chosen] == ids[chosen]).float().mean().item()
    assert abs(chosen[:, :-5].float().mean().item() - 0.5) < 0.01
    assert abs(frac_mask - 0.8) < 0.02
    assert 0.08 < frac_same < 0.13  # the 10% kept plus random draws that hit the same id
    assert not bool(((inputs == 18) & chosen).any())  # no [PAD] inserted
    with pytest.raises(ValueError, match="replace"):
        bert_mask_tokens(ids, 19, V, replace=0.6, keep=0.6)


def test_bert_mask_tokens_deterministic():
    ids = torch.randint(0, 18, (4, T), generator=_gen(5))
    a = bert_mask_tokens(ids, 19, V, generator=_gen(6))
    b = bert_mask_tokens(ids, 19, V, generator=_gen(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_overfit_and_fill_mask_memorised_sentence():
    m = _model(dropout=0.0)
    sentence = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    batch = sentence.repeat(32, 1)
    first = None
    for step in range(150):
        x, y = bert_mask_tokens(batch, 19, V, p=0.3, generator=_gen(step))
        if not bool((y != IGNORE_INDEX).any()):
            continue
        _, loss = m(x, y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
    x = sentence.clone()
    x[5] = 19
    pos, probs, ids = m.fill_mask(x, top_k=3)
    assert pos.tolist() == [[0, 5]]
    assert ids[0, 0].item() == 9 and probs[0, 0].item() > 0.5
    assert bool((probs[0, :-1] >= probs[0, 1:]).all())
    y = torch.full((1, T), IGNORE_INDEX)
    y[0, 5] = 9
    assert masked_accuracy(m, x[None], y) == 1.0


def test_determinism_under_seed():
    x = torch.randint(0, 18, (2, T), generator=_gen(7))
    torch.testing.assert_close(_model(1)(x), _model(1)(x))


def test_bad_inputs():
    m = _model()
    with pytest.raises(ValueError, match="shape"):
        m(torch.zeros(T, dtype=torch.long))
    with pytest.raises(ValueError, match="block_size"):
        m(torch.zeros(1, T + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="Token ids"):
        m(torch.full((1, T), V))
    with pytest.raises(ValueError, match="MASK"):
        m.fill_mask(torch.zeros(T, dtype=torch.long))


def test_build_model_round_trip():
    m = _model()
    m2 = build_model("masked_lm", m.config_dict())
    m2.load_state_dict(m.state_dict())
    x = torch.randint(0, 18, (2, T), generator=_gen(8))
    torch.testing.assert_close(m.eval()(x), m2.eval()(x))
