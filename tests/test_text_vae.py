"""Tests for aigc_course.models.text_vae (the sentence VAE of notebook 5.6)."""

from __future__ import annotations

import pytest
import torch

from aigc_course.models import TextVAE, TextVAEConfig, active_units, build_model, gaussian_kl
from aigc_course.models.text_vae import kl_weight

V = 12  # 0 [PAD], 1 [BOS], 2 [EOS], 3 [UNK], 4..11 words


def _model(seed: int = 0, **kw) -> TextVAE:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=V, emb_dim=16, hidden=32, latent_dim=4)
    cfg.update(kw)
    return TextVAE(TextVAEConfig(**cfg))


def _batch():
    """Two sentences of lengths 3 and 2, right-padded: src, tgt_in, tgt_out."""
    src = torch.tensor([[4, 5, 6], [7, 8, 0]])
    tgt_in = torch.tensor([[1, 4, 5, 6], [1, 7, 8, 0]])
    tgt_out = torch.tensor([[4, 5, 6, 2], [7, 8, 2, 0]])
    return src, tgt_in, tgt_out


def test_forward_shapes_and_gradients():
    m = _model()
    out = m(*_batch())
    assert out["mu"].shape == out["logvar"].shape == (2, 4)
    assert out["kl_per_dim"].shape == (4,)
    for key in ("loss", "rec", "rec_per_token", "kl", "nelbo"):
        assert out[key].dim() == 0
    torch.testing.assert_close(out["nelbo"], out["rec"] + out["kl"])
    # rec is summed per sentence (7 scored tokens over 2 sentences), rec_per_token is per token
    torch.testing.assert_close(out["rec"] * 2 / 7, out["rec_per_token"])
    out["loss"].backward()
    assert all(p.grad is not None for p in m.parameters())


def test_padding_does_not_change_the_encoding():
    m = _model().eval()
    mu_a, _ = m.encode(torch.tensor([[7, 8]]))
    mu_b, _ = m.encode(torch.tensor([[7, 8, 0, 0]]))
    torch.testing.assert_close(mu_a, mu_b)


def test_kl_closed_form_matches_monte_carlo():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(3, 4, generator=g)
    logvar = torch.randn(3, 4, generator=g) * 0.5
    std = torch.exp(0.5 * logvar)
    z = mu + std * torch.randn(200_000, 3, 4, generator=g)  # samples from q
    log_q = torch.distributions.Normal(mu, std).log_prob(z)
    log_p = torch.distributions.Normal(0.0, 1.0).log_prob(z)
    mc = (log_q - log_p).mean(0)  # (3, 4)
    torch.testing.assert_close(gaussian_kl(mu, logvar), mc, atol=0.02, rtol=0.02)


def test_kl_is_zero_when_q_is_the_prior():
    torch.testing.assert_close(gaussian_kl(torch.zeros(2, 5), torch.zeros(2, 5)), torch.zeros(2, 5))
    assert bool((gaussian_kl(torch.randn(6, 5), torch.randn(6, 5)) >= 0).all())


@pytest.mark.parametrize("kind", ["linear", "sigmoid"])
def test_kl_weight_monotone_in_unit_interval(kind):
    w = [kl_weight(s, 100, kind) for s in range(0, 151)]
    assert all(0.0 <= v <= 1.0 for v in w)
    assert all(a <= b for a, b in zip(w, w[1:]))
    assert w[0] == pytest.approx(0.0) and w[100] == pytest.approx(1.0) and w[150] == 1.0
    assert kl_weight(5, 0, kind) == 1.0


def test_kl_weight_bad_inputs():
    with pytest.raises(ValueError, match="kind"):
        kl_weight(1, 10, "cosine")
    with pytest.raises(ValueError, match="warmup"):
        kl_weight(1, -1)


def test_active_units():
    mu = torch.zeros(100, 3)
    mu[:, 0] = torch.linspace(-1, 1, 100)  # varies with x: active
    mu[:, 1] = 0.01 * torch.linspace(-1, 1, 100)  # variance 3e-5: inactive
    n, var = active_units(mu)
    assert n == 1 and var.shape == (3,)
    with pytest.raises(ValueError, match="N >= 2"):
        active_units(torch.zeros(1, 3))


def test_free_bits_floor_the_kl_term():
    torch.manual_seed(0)
    m = _model(free_bits=0.5)
    out = m(*_batch())
    floor = out["kl_per_dim"].clamp(min=0.5).sum()
    torch.testing.assert_close(out["loss"], out["rec"] + floor)


def test_word_dropout_only_in_training():
    m = _model(word_dropout=0.5)
    tgt_in = torch.tensor([[1] + [4] * 200])
    dropped = m.train().word_dropout(tgt_in)
    assert dropped[0, 0] == 1 and 0.35 < (dropped == 3).float().mean() < 0.65
    assert torch.equal(m.eval().word_dropout(tgt_in), tgt_in)


def test_overfit_one_batch_and_decode():
    m = _model()
    src, tgt_in, tgt_out = _batch()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(200):
        out = m(src, tgt_in, tgt_out, beta=0.1)  # a small KL weight: z must tell them apart
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    assert out["rec"].item() < 0.5
    mu, _ = m.encode(src)
    decoded = m.decode_greedy(mu, max_len=6)
    assert decoded[0].tolist()[:4] == [4, 5, 6, 2]
    assert decoded[1].tolist()[:3] == [7, 8, 2]


def test_interpolate_and_sample_prior():
    m = _model()
    z = TextVAE.interpolate(torch.zeros(4), torch.ones(4), n=5)
    assert z.shape == (5, 4)
    torch.testing.assert_close(z[2], torch.full((4,), 0.5))
    ids = m.sample_prior(3, max_len=7, generator=torch.Generator().manual_seed(0))
    assert ids.shape[0] == 3 and ids.shape[1] <= 7
    with pytest.raises(ValueError, match="n must be"):
        TextVAE.interpolate(torch.zeros(4), torch.ones(4), n=1)


def test_determinism_under_seed():
    torch.manual_seed(3)
    a = _model(1)(*_batch())["loss"]
    torch.manual_seed(3)
    b = _model(1)(*_batch())["loss"]
    torch.testing.assert_close(a, b)


def test_bad_inputs():
    m = _model()
    src, tgt_in, tgt_out = _batch()
    with pytest.raises(ValueError, match="empty sentence"):
        m.encode(torch.tensor([[4, 5], [0, 0]]))
    with pytest.raises(ValueError, match="same shape"):
        m(src, tgt_in[:, :3], tgt_out)
    with pytest.raises(ValueError, match="outside"):
        m.encode(torch.tensor([[V]]))
    with pytest.raises(ValueError, match="shape"):
        m.encode(torch.tensor([4, 5]))
    with pytest.raises(ValueError, match="z must be"):
        m.decode_greedy(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="word_dropout"):
        TextVAEConfig(word_dropout=1.0)


def test_build_model_round_trip():
    m = _model()
    m2 = build_model("text_vae", m.config_dict())
    m2.load_state_dict(m.state_dict())
    mu1, _ = m.encode(_batch()[0])
    mu2, _ = m2.encode(_batch()[0])
    torch.testing.assert_close(mu1, mu2)
