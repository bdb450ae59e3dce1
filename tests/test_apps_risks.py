"""Chapter 6.7's tools (aigc_course.apps.risks): image detector, memorisation, provenance labels."""

import hashlib

import numpy as np
import pytest
import torch

from aigc_course.apps import risks
from aigc_course.metrics.memorization import verbatim_overlap
from aigc_course.pretrained import find_weights
from aigc_course.text import watermark as wm


# ---------------------------------------------------------------- memorisation
def test_ngram_counts_find_duplicates():
    ids = torch.tensor([1, 2, 3, 9, 1, 2, 3, 7, 5])
    counts = risks.NgramCounts(ids, 3)
    assert counts.duplicated().tolist() == [True, False, False, False, True, False, False]
    assert counts.duplicate_rate() == pytest.approx(2 / 7)
    assert counts.copied(torch.tensor([1, 2, 3, 7, 4])) == {"novel": 1, "from_unique": 1, "from_duplicated": 1}
    assert len(risks.ngram_hashes(ids, 20)) == 0
    with pytest.raises(ValueError):
        risks.ngram_hashes(ids[None], 2)


def test_copied_share_agrees_with_verbatim_overlap():
    g = torch.Generator().manual_seed(0)
    corpus = torch.randint(4, (3000,), generator=g)
    sample = torch.cat([corpus[100:160], torch.randint(4, (60,), generator=g)])
    to_str = lambda t: "".join("abcd"[i] for i in t.tolist())  # noqa: E731
    for n in (3, 8, 20):
        c = risks.NgramCounts(corpus, n).copied(sample)
        share = (c["from_unique"] + c["from_duplicated"]) / sum(c.values())
        assert share == pytest.approx(verbatim_overlap(to_str(sample), to_str(corpus), n))


def test_extraction_attack_with_an_oracle_and_a_know_nothing_model():
    V = 10
    train = torch.arange(300) % V                      # each token is the previous + 1

    def oracle(ids):
        return torch.nn.functional.one_hot((ids[:, -1] + 1) % V, V).float()

    r = risks.extraction_attack(oracle, train, 8, 6, 20, torch.Generator().manual_seed(0))
    assert r.rate == 1.0 and (r.matched == 6).all() and r.starts.shape == (20,)
    shuffled = torch.randint(V, (300,), generator=torch.Generator().manual_seed(1))
    r = risks.extraction_attack(oracle, shuffled, 8, 6, 50, torch.Generator().manual_seed(0))
    assert r.rate < 0.05
    fixed = risks.extraction_attack(oracle, train, 8, 6, 0, starts=torch.tensor([0, 5]))
    assert fixed.starts.tolist() == [0, 5]
    with pytest.raises(ValueError):
        risks.extraction_attack(oracle, train[:10], 8, 6, 1)


# ---------------------------------------------------------------- image detector
def test_detector_separates_an_easy_pair_and_checks_shapes():
    g = torch.Generator().manual_seed(0)
    real = (torch.randn(200, 1, 28, 28, generator=g) * 0.3 - 0.5).clamp(-1, 1)
    fake = (torch.randn(200, 1, 28, 28, generator=g) * 0.3 + 0.5).clamp(-1, 1)
    det = risks.train_detector(real, fake, risks.DetectorConfig(steps=30, batch_size=32))
    p_real, p_fake = risks.fake_probability(det, real[:50]), risks.fake_probability(det, fake[:50])
    assert p_real.shape == (50,) and ((p_real >= 0) & (p_real <= 1)).all()
    assert p_fake.mean() > 0.9 and p_real.mean() < 0.1
    with pytest.raises(ValueError, match="28, 28"):
        risks.train_detector(real[:, :, :14], fake)


@pytest.mark.parametrize("name", risks.IMAGE_GENERATORS)
def test_sample_generator_shapes(name):
    x = risks.sample_generator(name, 3, torch.Generator().manual_seed(0), ddim_steps=2, batch_size=2)
    assert x.shape == (3, 1, 28, 28) and x.min() >= -1 and x.max() <= 1


def test_sample_generator_rejects_unknown_names():
    with pytest.raises(ValueError, match="Unknown image generator"):
        risks.sample_generator("stylegan", 2)
    with pytest.raises(ValueError):
        risks.sample_generator("dcgan_mnist", 0)


# ---------------------------------------------------------------- provenance
def test_label_round_trip_tamper_and_strip(tmp_path):
    from PIL import Image, PngImagePlugin

    key = b"k"
    image = torch.linspace(-1, 1, 28 * 28).view(1, 28, 28)
    manifest = {"generator": "dcgan_mnist", "card_sha256": risks.card_sha256("dcgan_mnist"), "ai_generated": True}
    assert manifest["card_sha256"] == hashlib.sha256(find_weights("dcgan_mnist")[1].read_bytes()).hexdigest()
    path = risks.save_labeled_png(tmp_path / "a.png", image, manifest, key)
    assert risks.read_label(path)["manifest"] == manifest
    assert risks.verify_label(path, key) == "valid"
    assert risks.verify_label(path, b"other") == "invalid"
    with Image.open(path) as im:
        assert np.asarray(im).shape == (28, 28)
        info = PngImagePlugin.PngInfo()
        for k, v in im.text.items():
            info.add_text(k, v)
        edited = im.copy()
        edited.putpixel((3, 3), 255 - edited.getpixel((3, 3)))
        edited.save(tmp_path / "edited.png", pnginfo=info)
        im.save(tmp_path / "plain.png")
    assert risks.verify_label(tmp_path / "edited.png", key) == "invalid"
    assert risks.read_label(tmp_path / "plain.png") is None
    assert risks.verify_label(tmp_path / "plain.png", key) == "no label"
    with pytest.raises(ValueError, match="grayscale"):
        risks.save_labeled_png(tmp_path / "b.png", torch.zeros(3, 8, 8), manifest, key)


# ---------------------------------------------------------------- the real section, on the tiny model
def test_watermark_on_the_tiny_instruct_lm():
    pytest.importorskip("transformers")
    from aigc_course.apps import hub

    lm, tok = hub.tiny_instruct_lm()
    ids = tok.apply_chat_template([{"role": "user", "content": "Hello"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    f = risks.hf_next_logits(lm)
    V = f(ids).shape[-1]
    cfg = wm.WatermarkConfig(gamma=0.25, delta=2.0, key=15485863)
    zs = {}
    for delta in (0.0, 8.0):
        c = wm.WatermarkConfig(cfg.gamma, delta, cfg.key)
        out = wm.generate(f, ids, 24, c, temperature=0.7, generator=torch.Generator().manual_seed(0))
        assert out.shape == (1, ids.shape[1] + 24)
        zs[delta] = wm.detect(out[0, ids.shape[1] - 1:], V, cfg)
    assert zs[8.0].watermarked and zs[8.0].n_scored == 24
    assert zs[8.0].z > zs[0.0].z
