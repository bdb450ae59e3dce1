"""The green-list watermark (aigc_course.text.watermark): green lists, the z-test, power, keys."""

import math

import pytest
import torch

from aigc_course.text import decoding as dec
from aigc_course.text import watermark as wm

V = 65


def flat(ids):
    """A 'model' whose next-token distribution is uniform: the most watermarkable text there is."""
    return torch.zeros(ids.shape[0], V)


def generate_flat(delta, key=7, n=64, T=100, seed=0):
    cfg = wm.WatermarkConfig(gamma=0.25, delta=delta, key=key)
    prompt = torch.randint(V, (n, 1), generator=torch.Generator().manual_seed(seed))
    return wm.generate(flat, prompt, T, cfg, generator=torch.Generator().manual_seed(seed + 1))


def test_config_rejects_bad_values():
    for kwargs in ({"gamma": 0.0}, {"gamma": 1.0}, {"delta": -1.0}, {"context": 0}, {"context": 1.5},
                   {"key": 1.5}):
        with pytest.raises(ValueError):
            wm.WatermarkConfig(**kwargs)


def test_green_list_size_determinism_and_key():
    cfg = wm.WatermarkConfig(gamma=0.25, key=1)
    g = wm.green_list([3], V, cfg)
    assert len(g) == wm.green_size(V, 0.25) == 16 and len(set(g.tolist())) == 16
    assert wm.effective_gamma(V, 0.25) == 16 / 65
    assert torch.equal(g, wm.green_list([3], V, cfg))
    assert not torch.equal(g.sort().values, wm.green_list([3], V, wm.WatermarkConfig(key=2)).sort().values)
    assert not torch.equal(g.sort().values, wm.green_list([4], V, cfg).sort().values)
    with pytest.raises(ValueError, match="context"):
        wm.green_list([3, 4], V, cfg)
    with pytest.raises(ValueError, match="at least 2"):
        wm.green_size(1, 0.5)


def test_table_mask_and_flags_agree_with_green_list():
    cfg = wm.WatermarkConfig(key=3)
    table = wm.green_table(V, cfg)
    for prev in (0, 10, 64):
        assert set(table[prev].nonzero()[:, 0].tolist()) == set(wm.green_list([prev], V, cfg).tolist())
    ids = torch.randint(V, (4, 9), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(wm.green_mask(ids, V, cfg), table[ids[:, -1]])
    flags = wm.green_flags(ids[0], V, cfg)
    assert flags.shape == (8,)
    assert flags.tolist() == [bool(table[ids[0, t - 1], ids[0, t]]) for t in range(1, 9)]
    # the loop path (large vocabulary or longer context) gives the same answers
    big = wm.TABLE_MAX_VOCAB + 1
    ids_big = torch.randint(big, (2, 5), generator=torch.Generator().manual_seed(1))
    mask = wm.green_mask(ids_big, big, cfg)
    assert mask.sum(1).tolist() == [wm.green_size(big, cfg.gamma)] * 2
    assert bool(mask[0, wm.green_list([ids_big[0, -1]], big, cfg)].all())
    with pytest.raises(ValueError, match="prompt of at least"):
        wm.green_mask(torch.zeros(1, 1, dtype=torch.long), V, wm.WatermarkConfig(context=2))


def test_watermark_logits_adds_delta_on_green_only():
    cfg = wm.WatermarkConfig(delta=3.0, key=5)
    logits = torch.randn(2, V, generator=torch.Generator().manual_seed(0))
    ids = torch.tensor([[1, 2], [3, 4]])
    out = wm.watermark_logits(logits, ids, cfg)
    diff = out - logits
    torch.testing.assert_close(diff, 3.0 * wm.green_mask(ids, V, cfg).float())
    with pytest.raises(ValueError):
        wm.watermark_logits(logits, ids[:1], cfg)


def test_delta_zero_is_the_plain_sampler():
    prompt = torch.tensor([[1], [2]])
    plain = dec.sample(flat, prompt, 20, generator=torch.Generator().manual_seed(0))
    marked = wm.generate(flat, prompt, 20, wm.WatermarkConfig(delta=0.0), generator=torch.Generator().manual_seed(0))
    assert torch.equal(plain, marked)


def test_z_is_standard_normal_on_unwatermarked_random_text():
    ids = torch.randint(V, (3000, 201), generator=torch.Generator().manual_seed(0))
    z = wm.z_scores(ids, V, wm.WatermarkConfig(key=11))
    # mean: standard error 1 / sqrt(3000) = 0.018; std: standard error about 0.013
    assert abs(z.mean().item()) < 0.08
    assert 0.94 < z.std().item() < 1.06
    assert (z > 1.645).float().mean().item() < 0.08   # nominal 5 %
    # a context of two tokens (the loop path), fewer samples
    z2 = wm.z_scores(ids[:300, :101], V, wm.WatermarkConfig(key=11, context=2))
    assert abs(z2.mean().item()) < 0.25 and 0.8 < z2.std().item() < 1.2


def test_power_rises_with_delta():
    cfg = wm.WatermarkConfig(key=7)
    means, detected = [], []
    for delta in (0.0, 0.5, 1.0, 2.0, 4.0):
        z = wm.z_scores(generate_flat(delta), V, cfg)
        means.append(z.mean().item())
        detected.append((z > 4).float().mean().item())
    assert all(a < b for a, b in zip(means, means[1:])), means
    assert detected[0] == 0.0 and detected[-1] == 1.0
    assert detected == sorted(detected)


def test_wrong_key_detects_nothing():
    ids = generate_flat(4.0, key=7)
    assert (wm.z_scores(ids, V, wm.WatermarkConfig(key=7)) > 4).all()
    z_wrong = wm.z_scores(ids, V, wm.WatermarkConfig(key=8))
    assert (z_wrong > 4).float().mean().item() == 0.0
    assert abs(z_wrong.mean().item()) < 0.6


def test_detect_and_z_formula():
    n_green, T, gamma = 70, 200, 0.25
    assert math.isclose(wm.z_score(n_green, T, gamma), (70 - 50) / math.sqrt(200 * 0.25 * 0.75))
    assert math.isclose(wm.p_value(0.0), 0.5)
    assert wm.p_value(4.0) < 1e-4
    with pytest.raises(ValueError, match="No token"):
        wm.z_score(0, 0, gamma)
    det = wm.detect(generate_flat(4.0, n=1)[0], V, wm.WatermarkConfig(key=7))
    assert det.watermarked and det.n_scored == 100 and det.p_value < 1e-4


def test_substitute_changes_exactly_the_share():
    ids = torch.randint(V, (5, 40), generator=torch.Generator().manual_seed(0))
    out = wm.substitute(ids, 0.25, V, torch.Generator().manual_seed(1))
    assert ((out != ids).sum(1) == 10).all()
    assert torch.equal(wm.substitute(ids, 0.0, V), ids)
    with pytest.raises(ValueError):
        wm.substitute(ids, 1.5, V)
    z_edit = wm.z_scores(wm.substitute(generate_flat(4.0), 0.5, V, torch.Generator().manual_seed(2)), V,
                         wm.WatermarkConfig(key=7))
    assert z_edit.mean() < wm.z_scores(generate_flat(4.0), V, wm.WatermarkConfig(key=7)).mean()
