"""An offline, tiny, randomly initialised Stable Diffusion pipeline (aigc_course.diffusion.tiny_sd, chapter 3.8).

It checks that the diffusers + transformers stack the book describes can be assembled from
configs alone (no download): CLIP text encoder -> U-Net denoising a latent -> VAE decoder.
"""

import pytest
import torch

transformers = pytest.importorskip("transformers")
diffusers = pytest.importorskip("diffusers")

from aigc_course.diffusion.tiny_sd import tiny_clip_tokenizer as tiny_tokenizer  # noqa: E402
from aigc_course.diffusion.tiny_sd import tiny_stable_diffusion as tiny_pipeline  # noqa: E402


@pytest.fixture
def pipe(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    return tiny_pipeline(tmp_path)


def test_tokenizer_uses_the_merges(tmp_path):
    tok, _ = tiny_tokenizer(tmp_path)
    ids = tok("a low digit").input_ids
    assert tok.convert_ids_to_tokens(ids) == ["<|startoftext|>", "a</w>", "low</w>", "digit</w>", "<|endoftext|>"]


def test_tiny_stable_diffusion_runs_offline_and_is_deterministic(pipe):
    def run(seed):
        g = torch.Generator("cpu").manual_seed(seed)
        return pipe("a low digit", num_inference_steps=2, guidance_scale=5.0, generator=g,
                    output_type="np").images

    a, b, c = run(0), run(0), run(1)
    # the VAE halves the size once per extra block: latent 4 x 8 x 8 -> image 16 x 16 x 3
    assert pipe.vae_scale_factor == 2
    assert a.shape == (1, 16, 16, 3)
    assert a.min() >= 0 and a.max() <= 1  # "np" output is post-processed to [0, 1]
    assert (a == b).all()  # the same generator seed gives the same image
    assert not (a == c).all()


def test_prompt_embeddings_come_from_the_clip_text_encoder(pipe):
    ids = pipe.tokenizer("a low digit", padding="max_length", max_length=16, return_tensors="pt").input_ids
    hidden = pipe.text_encoder(ids).last_hidden_state  # (1, 16, 32): one vector per token
    assert hidden.shape == (1, 16, 32)
    prompt_embeds, negative = pipe.encode_prompt("a low digit", "cpu", 1, True)
    torch.testing.assert_close(prompt_embeds, hidden)
    assert negative.shape == hidden.shape  # the empty prompt of classifier-free guidance
