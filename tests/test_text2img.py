"""Text-to-image in miniature: prompts, the mini-CLIP, the latent autoencoder, the pipeline, EMA."""

from __future__ import annotations

import pytest
import torch
from data_marks import needs_data

from aigc_course.diffusion import NoiseSchedule, ScheduleConfig
from aigc_course.diffusion.pipeline import TextToImage
from aigc_course.models import (
    LatentDiffusion,
    LatentDiffusionConfig,
    MiniCLIP,
    MiniCLIPConfig,
    UNet,
    UNetConfig,
)
from aigc_course.text.prompts import (
    DIGIT_WORDS,
    TEMPLATES,
    TRAIN_TEMPLATES,
    all_prompts,
    build_vocab,
    encode_prompts,
    prompt,
    random_prompts,
)
from aigc_course.text.vocab import EOS, PAD
from aigc_course.train import EMA


def tiny_clip(vocab) -> MiniCLIP:
    torch.manual_seed(0)
    return MiniCLIP(MiniCLIPConfig(vocab_size=vocab.vocab_size, embed_dim=16, image_channels=(8, 8, 16),
                                   text_width=16, text_layers=1, text_heads=2))


def test_prompts_and_vocab():
    assert prompt(7) == "a handwritten seven" and prompt(3, "the number {d}") == "the number 3"
    assert len(all_prompts()) == 10 * len(TEMPLATES) and TEMPLATES[-1] not in TRAIN_TEMPLATES
    vocab = build_vocab()
    assert all(w in vocab.stoi for w in DIGIT_WORDS)
    ids = encode_prompts(vocab, ["a handwritten seven", "", "7"])
    assert ids.shape == (3, 8) and ids[1, 0] == EOS and ids[1, 1:].eq(PAD).all()
    assert vocab.decode(ids[0]) == "a handwritten seven"
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    labels = torch.tensor([0, 5, 9])
    assert random_prompts(labels, g1) == random_prompts(labels, g2)
    with pytest.raises(ValueError, match="0..9"):
        prompt(10)
    with pytest.raises(ValueError, match="limit"):
        encode_prompts(vocab, ["a a a a a a a a a"])


def test_mini_clip_shapes_norms_and_loss():
    vocab = build_vocab()
    model = tiny_clip(vocab)
    x, y = torch.randn(6, 1, 28, 28), torch.tensor([0, 1, 2, 0, 1, 2])
    tokens = encode_prompts(vocab, [prompt(int(d)) for d in y])
    img, txt = model.encode_image(x), model.encode_text(tokens)
    assert img.shape == txt.shape == (6, 16)
    torch.testing.assert_close(img.norm(dim=1), torch.ones(6))
    logits = model(x, tokens)
    assert logits.shape == (6, 6)
    # diagonal targets: the loss is the mean of the two cross-entropies
    ce = torch.nn.functional.cross_entropy
    expected = (ce(logits, torch.arange(6)) + ce(logits.T, torch.arange(6))) / 2
    torch.testing.assert_close(model.loss(x, tokens), expected)
    loss = model.loss(x, tokens, y)
    loss.backward()
    assert model.logit_scale.grad is not None and model.image_encoder.proj.weight.grad.abs().sum() > 0
    # the text embedding reads the <eos> position: padding after it changes nothing
    t2 = tokens.clone()
    t2[:, -1] = vocab.stoi["seven"]
    torch.testing.assert_close(model.encode_text(t2), txt)


def test_mini_clip_learns_to_match_one_batch():
    vocab = build_vocab()
    model = tiny_clip(vocab)
    x, y = torch.randn(10, 1, 28, 28), torch.arange(10)
    tokens = encode_prompts(vocab, [prompt(int(d)) for d in y])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = model.loss(x, tokens)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
    assert (model(x, tokens).argmax(1) == y).all()


def test_mini_clip_bad_input():
    vocab = build_vocab()
    model = tiny_clip(vocab)
    with pytest.raises(ValueError, match="28, 28"):
        model.encode_image(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match="eos"):
        model.encode_text(torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="encode_prompts"):
        model.encode_text(torch.ones(2, 20, dtype=torch.long))


def test_latent_autoencoder_and_unet_shapes():
    torch.manual_seed(0)
    model = LatentDiffusion(LatentDiffusionConfig(ae_channels=(8, 8), unet_base=8, time_dim=32, cond_dim=16,
                                                  latent_scale=2.0))
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    mean, logvar = model.autoencoder.encode(x)
    assert mean.shape == logvar.shape == (3, 4, 7, 7) == (3, *model.latent_shape)
    z = model.to_latent(x)
    torch.testing.assert_close(z, 2.0 * mean)
    torch.testing.assert_close(model.to_image(z), model.autoencoder.decode(mean))
    assert model(z, torch.tensor([1, 2, 3]), cond=torch.randn(3, 16)).shape == z.shape
    parts = model.autoencoder.loss(x)
    assert set(parts) == {"loss", "recon", "kl"} and parts["kl"] >= 0
    with pytest.raises(ValueError, match="28, 28"):
        model.autoencoder.encode(torch.randn(2, 1, 14, 14))


def test_ema_average_is_bias_corrected():
    model = torch.nn.Linear(2, 1)
    ema = EMA(model, decay=0.5)
    with pytest.raises(ValueError, match="no update"):
        ema.copy_to(model)
    w0 = model.weight.detach().clone()
    seen = []
    for _ in range(3):  # weights w0 + 1, w0 + 2, w0 + 3 after three "optimizer steps"
        with torch.no_grad():
            model.weight.add_(1.0)
        seen.append(model.weight.detach().clone())
        ema.update(model)
    # weights 0.25, 0.5, 1 (decay^(n-k)) normalised: the initial weights have no share
    expected = (0.25 * seen[0] + 0.5 * seen[1] + 1.0 * seen[2]) / 1.75
    torch.testing.assert_close(ema.averaged()["weight"], expected)
    ema.copy_to(model)
    torch.testing.assert_close(model.weight.detach(), w0 + 1 + (0.5 * 1 + 1.0 * 2) / 1.75)
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.0)


def _pipe(shape=(1, 28, 28), decode=None, in_channels=1):
    vocab = build_vocab()
    clip = tiny_clip(vocab)
    unet = UNet(UNetConfig(in_channels=in_channels, base=8, time_dim=32, cond_dim=16))
    torch.nn.init.normal_(unet.out[-1].weight, std=0.05)
    return TextToImage(clip, vocab, unet.eval(), NoiseSchedule(ScheduleConfig(num_steps=100)), shape, decode)


def test_pipeline_stages_and_determinism():
    pipe = _pipe()
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    a, steps = pipe(["a handwritten seven", "2"], 3.0, 5, generator=g(), return_steps=True)
    b = pipe(["a handwritten seven", "2"], 3.0, 5, generator=g())
    assert a.shape == (2, 1, 28, 28) and a.min() >= -1 and a.max() <= 1
    torch.testing.assert_close(a, b)
    assert steps["timesteps"] == [80, 60, 40, 20, 0] and len(steps["states"]) == len(steps["x0"]) == 5
    # guidance 1 = the conditional model alone; guidance changes the result
    c = pipe(["a handwritten seven", "2"], 1.0, 5, generator=g())
    assert not torch.allclose(a, c)
    with pytest.raises(ValueError, match="guidance_scale"):
        pipe(["7"], -1.0, 5)


def test_pipeline_with_a_latent_decoder():
    torch.manual_seed(0)
    ldm = LatentDiffusion(LatentDiffusionConfig(ae_channels=(8, 8), unet_base=8, time_dim=32, cond_dim=16))
    vocab = build_vocab()
    pipe = TextToImage(tiny_clip(vocab), vocab, ldm.unet.eval(), NoiseSchedule(ScheduleConfig(num_steps=100)),
                       ldm.latent_shape, ldm.to_image)
    images, steps = pipe(["3"], 2.0, 3, generator=torch.Generator().manual_seed(1), return_steps=True)
    assert images.shape == (1, 1, 28, 28) and steps["states"][0].shape == (1, 1, 28, 28)


@needs_data
def test_recipes_fast_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path))
    from aigc_course.diffusion.pipeline import load_text_to_image
    from aigc_course.recipes import run

    clip_card = run("mini_clip_mnist", fast=True)  # the cache copy wins over the shipped one
    assert 0 <= clip_card["metrics"]["zero_shot_accuracy"] <= 1
    for name in ("txt2img_mnist", "latent_diffusion_mnist"):
        card = run(name, fast=True)
        assert card["text_encoder"] == "mini_clip_mnist" and 0 <= card["metrics"]["prompt_accuracy"] <= 1
        pipe = load_text_to_image(name)
        images = pipe(["a handwritten four"], 2.0, 2, generator=torch.Generator().manual_seed(0))
        assert images.shape == (1, 1, 28, 28)
    with pytest.raises(ValueError, match="recipe"):
        run("txt2img_mnist", fast=True, recipe="tpu")


@pytest.mark.parametrize("name", ["txt2img_mnist", "latent_diffusion_mnist"])
def test_shipped_text_to_image_models_follow_prompts(name):
    """The shipped weights obey their prompts: of 200 guided DDIM-20 samples (20 per digit), the
    course classifier recognises the prompted digit in at least 188 (94%).

    The threshold leaves a stated margin on both sides. Measured: 200 of 200 for pixels, 199 for
    latents; the cards say 0.998 and 0.974 (500 DDIM-50 samples). A model with the lower card
    accuracy, 0.974, falls under 188 of 200 with binomial probability 0.0024; the earlier
    2,000-step pixel weights (0.874) would reach 188 with probability 0.0017."""
    from aigc_course.diffusion.pipeline import load_text_to_image
    from aigc_course.pretrained import load_pretrained
    from aigc_course.recipes.txt2img_mnist import prompt_accuracy

    n, threshold = 200, 188
    classifier, _ = load_pretrained("mnist_cnn")
    accuracy = prompt_accuracy(load_text_to_image(name), classifier, "a handwritten {w}", per_digit=n // 10,
                               num_steps=20)
    correct = round(accuracy * n)
    assert correct >= threshold, f"{name}: {correct} of {n} samples show the prompted digit (need {threshold})"
