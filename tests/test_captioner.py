"""Tests of the caption builder (captions.py), the attention captioner (models/captioner.py) and
the recipe captioner_mnist."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from data_marks import needs_data

from aigc_course.models import Captioner, CaptionerConfig, build_model
from aigc_course.models.captioner import EOS, PAD, attend
from aigc_course.text.captions import (
    TEMPLATES,
    AttributeBins,
    all_phrasings,
    attribute_accuracy,
    build_captions,
    caption,
    caption_vocab,
    encode_captions,
    measure_attributes,
    parse_caption,
)
from aigc_course.text.tokenizers import load_tokenizer_file
from aigc_course.text.vocab import Vocab


def stroke(width: int, shear: float = 0.0) -> torch.Tensor:
    """A synthetic vertical bar (1, 1, 28, 28) in [-1, 1], ``width`` pixels wide, sheared so that
    its top moves ``shear`` pixels to the right per pixel of height."""
    img = -torch.ones(1, 1, 28, 28)
    for row in range(4, 24):
        centre = 14 + shear * (14 - row)
        left = int(round(centre - width / 2))
        img[0, 0, row, left : left + width] = 1.0
    return img


def tiny(V=None, seed=0):
    torch.manual_seed(seed)
    return Captioner(CaptionerConfig.tiny(V or caption_vocab().vocab_size))


def toy_batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 28, 28, generator=g) * 2 - 1
    vocab = caption_vocab()
    texts = [caption(i % 10, i % 3, (i + 1) % 3, i % len(TEMPLATES)) for i in range(n)]
    tgt_in, tgt_out = encode_captions(vocab, texts)
    return {"images": images, "tgt_in": tgt_in, "tgt_out": tgt_out}


# ------------------------------------------------------------------------------ captions.py


def test_thicker_stroke_measures_thicker_and_slant_sign():
    widths = torch.cat([stroke(w) for w in (2, 3, 4, 5)])
    t = measure_attributes(widths)["thickness"]
    assert (t[1:] > t[:-1]).all()  # monotone in the true width
    assert abs(float(t[2]) - 4.0) < 1.0  # and close to it in pixels
    s = measure_attributes(torch.cat([stroke(3, -0.3), stroke(3, 0.0), stroke(3, 0.3)]))["slant"]
    assert s[0] < -0.2 and abs(float(s[1])) < 0.05 and s[2] > 0.2


def test_bins_classes_and_captions_of_synthetic_strokes():
    images = torch.cat([stroke(2, -0.3), stroke(5, 0.4), stroke(3, 0.1)])
    bins = AttributeBins(thickness=(2.55, 3.15), slant=(-0.01, 0.22))  # MNIST's tertiles
    classes = bins.classes(measure_attributes(images))
    assert classes["thickness"].tolist() == [0, 2, 1] and classes["slant"].tolist() == [0, 2, 1]
    assert caption(7, 2, 2, 0) == "a thick seven leaning right"
    assert caption(8, 0, 0, 1).startswith("an eight written with a thin stroke")
    assert AttributeBins.from_dict(json.loads(json.dumps(bins.to_dict()))) == bins
    fitted = AttributeBins.fit({"thickness": torch.arange(9.0), "slant": torch.arange(9.0)})
    counts = fitted.classes({"thickness": torch.arange(9.0), "slant": torch.arange(9.0)})["slant"].bincount()
    assert counts.tolist() == [3, 3, 3]  # tertiles: balanced classes


def test_parse_roundtrip_every_template():
    for y in range(10):
        for t in range(3):
            for s in range(3):
                for text in all_phrasings(y, t, s):
                    assert parse_caption(text) == {"label": y, "thickness": t, "slant": s}
    assert parse_caption("a seven and a one") == {"label": None, "thickness": None, "slant": None}


def test_build_captions_deterministic_and_accuracy():
    y = torch.tensor([3, 8, 1, 0])
    cl = {"thickness": torch.tensor([0, 1, 2, 0]), "slant": torch.tensor([2, 1, 0, 0])}
    a, b = build_captions(y, cl, seed=5), build_captions(y, cl, seed=5)
    assert a == b and all(parse_caption(c)["label"] == int(v) for c, v in zip(a, y))
    acc = attribute_accuracy(a, y, cl)
    assert acc["all_correct"] == 1.0 and acc["parsed"] == 1.0
    wrong = attribute_accuracy(["a thin three leaning right", "an eight", "x", "y"], y, cl)
    assert wrong["label_accuracy"] == 0.5 and wrong["parsed"] == 0.25
    with pytest.raises(ValueError, match="same length"):
        build_captions(y, {"thickness": cl["thickness"][:2], "slant": cl["slant"]})


def test_vocab_covers_every_caption_and_bad_input():
    vocab = caption_vocab()
    assert isinstance(vocab, Vocab) and vocab.vocab_size == 35
    assert all(3 not in vocab.encode(c) for c in all_phrasings(8, 1, 2))  # no <unk>
    tgt_in, tgt_out = encode_captions(vocab, ["a thin one leaning left"])
    assert tgt_in[0, 0] == 1 and tgt_out[0, -1] == EOS
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        measure_attributes(torch.full((1, 1, 28, 28), 255.0))
    with pytest.raises(ValueError, match="grayscale"):
        measure_attributes(torch.zeros(28, 28))
    with pytest.raises(ValueError, match="template"):
        caption(3, 0, 0, template=9)


# ------------------------------------------------------------------------- the captioner


def test_attend_matches_explicit_softmax():
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(3, 8, generator=g), torch.randn(3, 49, 8, generator=g), torch.randn(3, 49, 5, generator=g)
    context, w = attend(q, k, v, need_weights=True)
    ref_w = F.softmax((k @ q.unsqueeze(-1)).squeeze(-1) / math.sqrt(8), -1)
    torch.testing.assert_close(w, ref_w)
    torch.testing.assert_close(context, (w.unsqueeze(1) @ v).squeeze(1))


def test_shapes_and_attention_sums_to_one():
    model, b = tiny().eval(), toy_batch()
    logits, alpha = model(b["images"], b["tgt_in"], need_weights=True)
    B, T = b["tgt_in"].shape
    assert logits.shape == (B, T, model.config.vocab_size) and alpha.shape == (B, T, 49)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(B, T))
    tokens, maps = model.greedy_decode(b["images"], max_len=5)
    assert tokens.shape == (B, maps.shape[1]) and maps.shape[2:] == (7, 7)
    live = torch.ones_like(tokens, dtype=torch.bool)
    live[:, 1:] = ~(tokens[:, :-1] == EOS).cummax(1).values  # steps up to and including <eos>
    torch.testing.assert_close(maps.sum((2, 3))[live], torch.ones(int(live.sum())))
    assert model.config_dict()["channels"] == (8, 16, 16)


def test_gradients_flow_to_encoder_and_decoder():
    model, b = tiny(), toy_batch()
    model.loss(b).backward()
    for name in ("encoder.0.0.weight", "pos", "W_q.weight", "W_k.weight", "cell.weight_ih", "embed.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_overfit_one_batch():
    torch.manual_seed(0)
    vocab = caption_vocab()
    model = Captioner(CaptionerConfig(vocab_size=vocab.vocab_size, channels=(8, 16, 16), emb=16, hidden=32,
                                      attn_dim=16, dropout=0.0))
    b = toy_batch(4)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    first = float(model.loss(b).detach())
    for _ in range(80):
        opt.zero_grad()
        loss = model.loss(b)
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.05 * first
    model.eval()  # BatchNorm in eval mode: check the free-running decoder reproduces the captions
    tokens, _ = model.greedy_decode(b["images"], max_len=14)
    texts = [vocab.decode(t) for t in tokens]
    assert sum(t == vocab.decode(ref) for t, ref in zip(texts, b["tgt_out"])) >= 3


def test_deterministic_under_seed():
    b = toy_batch()
    out = [tiny(seed=3).eval()(b["images"], b["tgt_in"])[0] for _ in range(2)]
    torch.testing.assert_close(out[0], out[1])


def test_bad_input_raises():
    model = tiny()
    b = toy_batch()
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        model(torch.zeros(2, 3, 28, 28), b["tgt_in"][:2])
    with pytest.raises(ValueError, match="Word ids"):
        model(b["images"], b["tgt_in"] + 100)
    with pytest.raises(ValueError, match="B=6"):
        model(b["images"], b["tgt_in"][:2])
    with pytest.raises(ValueError, match="max_len"):
        model.greedy_decode(b["images"], max_len=0)
    with pytest.raises(ValueError, match="Invalid CaptionerConfig"):
        Captioner(CaptionerConfig(vocab_size=2))
    assert PAD == 0


@needs_data
def test_recipe_fast(tmp_path):
    from aigc_course.recipes.captioner_mnist import train

    card = train(out_dir=tmp_path, fast=True)
    assert {"bleu4", "label_accuracy", "thickness_accuracy", "slant_accuracy", "test_perplexity"} <= set(card["metrics"])
    saved = json.loads((tmp_path / "captioner_mnist.json").read_text(encoding="utf-8"))
    assert saved["train_command"] == "python -m aigc_course.train captioner_mnist --fast"
    model = build_model(saved["arch"], saved["config"])
    vocab = load_tokenizer_file(tmp_path / "captioner_mnist.tokenizer.json")
    assert model.config.vocab_size == vocab.vocab_size and vocab.tokens == caption_vocab().tokens
    assert AttributeBins.from_dict(saved["data"]["bins"]).thickness[0] > 0
