"""Reference models: shapes, gradients, causality, attention, sampling, overfitting one batch."""

import math

import pytest
import torch
import torch.nn.functional as F

from aigc_course import set_seed
from aigc_course.models import GPT, MLP, CNNClassifier, CNNConfig, GPTConfig, MLPConfig, build_model
from aigc_course.text.decoding import filter_logits
from aigc_course.train import TrainConfig, fit


def test_mlp_shapes_gradients_and_errors():
    m = MLP(MLPConfig.mnist())
    x = torch.randn(5, 1, 28, 28, requires_grad=True)
    out = m(x)
    assert out.shape == (5, 10)
    out.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in m.parameters())
    with pytest.raises(ValueError, match="784"):
        m(torch.randn(2, 100))
    with pytest.raises(ValueError, match="activation"):
        MLP(MLPConfig(activation="swishy"))


def test_cnn_shapes_and_features():
    m = CNNClassifier(CNNConfig())
    x = torch.randn(3, 1, 28, 28)
    assert m(x).shape == (3, 10) and m.features(x).shape == (3, 64)
    with pytest.raises(ValueError, match="28, 28"):
        m(torch.randn(3, 1, 32, 32))


def test_gpt_shapes_loss_and_param_count():
    cfg = GPTConfig.tiny(vocab_size=20, block_size=16)
    m = GPT(cfg)
    idx = torch.randint(0, 20, (4, 16))
    logits, loss = m(idx, torch.randint(0, 20, (4, 16)))
    assert logits.shape == (4, 16, 20)
    assert abs(loss.item() - math.log(20)) < 0.3  # near uniform at initialisation
    assert m.lm_head.weight is m.tok_emb.weight  # weight tying
    assert m.num_params() == sum(p.numel() for p in m.parameters()) - 16 * 64
    with pytest.raises(ValueError, match="block_size"):
        m(torch.randint(0, 20, (1, 17)))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        m(torch.randint(0, 20, (16,)))
    with pytest.raises(ValueError, match="divisible"):
        GPT(GPTConfig(n_embd=30, n_head=4))


def test_gpt_is_causal_and_encoder_is_not():
    set_seed(0)
    idx = torch.randint(0, 30, (1, 12))
    changed = idx.clone()
    changed[0, 8] = (idx[0, 8] + 1) % 30
    causal = GPT(GPTConfig(vocab_size=30, block_size=12, n_layer=2, n_head=2, n_embd=32)).eval()
    a, b = causal(idx), causal(changed)
    torch.testing.assert_close(a[:, :8], b[:, :8])  # the past cannot see the future
    assert not torch.allclose(a[:, 8:], b[:, 8:])
    enc = GPT(GPTConfig(vocab_size=30, block_size=12, n_layer=2, n_head=2, n_embd=32, causal=False)).eval()
    assert not torch.allclose(enc(idx)[:, :8], enc(changed)[:, :8])
    with pytest.raises(RuntimeError, match="causal"):
        enc.generate(idx, 2)


@pytest.mark.parametrize("kind", ["all_true", "padding", "additive"])
def test_causal_gpt_stays_causal_with_an_attention_mask(kind):
    """A mask given to a causal GPT restricts attention further and never lifts the causal one."""
    set_seed(0)
    idx = torch.randint(0, 30, (2, 12))
    changed = idx.clone()
    changed[:, 8] = (idx[:, 8] + 1) % 30
    model = GPT(GPTConfig(vocab_size=30, block_size=12, n_layer=2, n_head=2, n_embd=32)).eval()
    keys = torch.ones(2, 1, 1, 12, dtype=torch.bool)  # (B, nh, T_q, T_k) broadcast: key j visible
    if kind == "padding":
        keys[1, ..., 10:] = False  # the second sequence has two padding tokens at the end
    mask = keys if kind != "additive" else torch.zeros(2, 1, 1, 12).masked_fill(~keys, float("-inf"))
    a, b = model(idx, attn_mask=mask), model(changed, attn_mask=mask)
    torch.testing.assert_close(a[:, :8], b[:, :8])  # positions before 8 cannot see token 8
    assert not torch.allclose(a[:, 8:10], b[:, 8:10])
    if kind == "all_true":  # a mask that hides nothing changes nothing
        torch.testing.assert_close(a, model(idx), rtol=1e-5, atol=1e-6)


def test_attention_matches_manual_formula():
    set_seed(0)
    cfg = GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=16)
    attn = GPT(cfg).blocks[0].attn.eval()
    x = torch.randn(2, 8, 16)
    q, k, v = attn.qkv(x).split(16, dim=2)
    q, k, v = (z.view(2, 8, 2, 8).transpose(1, 2) for z in (q, k, v))
    scores = q @ k.transpose(-2, -1) / math.sqrt(8)
    scores = scores.masked_fill(torch.triu(torch.ones(8, 8, dtype=torch.bool), 1), float("-inf"))
    y = (F.softmax(scores, -1) @ v).transpose(1, 2).reshape(2, 8, 16)
    torch.testing.assert_close(attn(x), attn.proj(y))


def test_gpt_overfits_one_batch():
    set_seed(0)
    m = GPT(GPTConfig.tiny(vocab_size=12, block_size=16))
    idx = torch.randint(0, 12, (4, 17))
    batch = (idx[:, :-1], idx[:, 1:])
    hist = fit(m, lambda model, b: model(*b)[1], [batch], TrainConfig(steps=150, lr=3e-3))
    assert hist.loss[0] > 2.0 and hist.loss[-1] < 0.1


def test_generate_determinism_and_greedy():
    set_seed(0)
    m = GPT(GPTConfig.tiny(vocab_size=15, block_size=8))
    start = torch.zeros(2, 1, dtype=torch.long)
    a = m.generate(start, 20, generator=torch.Generator().manual_seed(1))
    b = m.generate(start, 20, generator=torch.Generator().manual_seed(1))
    assert a.shape == (2, 21) and torch.equal(a, b)  # longer than block_size: context is cropped
    g1, g2 = m.generate(start, 5, temperature=0), m.generate(start, 5, temperature=0)
    assert torch.equal(g1, g2)


def test_filter_logits_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    k2 = filter_logits(logits, top_k=2)
    assert torch.isfinite(k2).tolist() == [[True, True, False, False]]
    p = filter_logits(logits, top_p=0.7)  # 0.5 < 0.7 <= 0.8: keep the two likeliest
    assert torch.isfinite(p).tolist() == [[True, True, False, False]]
    p1 = filter_logits(logits, top_p=0.4)  # the top token alone is kept
    assert torch.isfinite(p1).tolist() == [[True, False, False, False]]
    shuffled = logits[:, [2, 0, 3, 1]]
    assert torch.isfinite(filter_logits(shuffled, top_p=0.7)).tolist() == [[False, True, False, True]]


def test_build_model_from_card_config():
    m = build_model("cnn_classifier", {"channels": [8, 16], "feature_dim": 32})
    assert m.config.channels == (8, 16) and m(torch.randn(1, 1, 28, 28)).shape == (1, 10)
    with pytest.raises(ValueError, match="Known"):
        build_model("resnet9000", {})
