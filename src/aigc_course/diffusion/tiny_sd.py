"""A tiny, randomly initialised Stable Diffusion pipeline built offline (chapter 3.8).

The real Stable Diffusion weights are gigabytes and need a download; this module assembles the
same diffusers ``StableDiffusionPipeline`` from configs alone, at toy size, so that its anatomy
(CLIP tokenizer -> CLIP text encoder -> U-Net with cross-attention on a 4-channel latent ->
VAE decoder, with a scheduler) can be inspected and run on a CPU in a fraction of a second.
Its images are noise: nothing is trained. Needs ``diffusers`` and ``transformers``.

The tokenizer is a real ``CLIPTokenizer`` over a hand-written byte-pair vocabulary: single
letters, letters that end a word ("a</w>"), and a few merges ("lo" + "w</w>" -> "low</w>");
every token a merge produces must be in the vocabulary, or it would be encoded as unknown.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

LETTERS = "abcdefghijklmnopqrstuvwxyz"
MERGES = (("l", "o"), ("lo", "w</w>"), ("d", "i"), ("di", "g"), ("dig", "i"), ("digi", "t</w>"))
MAX_TOKENS = 16  # Stable Diffusion's CLIP tokenizer pads to 77


def tiny_clip_tokenizer(folder: str | Path):
    """(CLIPTokenizer, vocab_size) from a vocab.json + merges.txt written into ``folder``."""
    import transformers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["<|startoftext|>", "<|endoftext|>"] + list(LETTERS) + [c + "</w>" for c in LETTERS]
    tokens += [a + b for a, b in MERGES]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in MERGES) + "\n")
    tok = transformers.CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                                     model_max_length=MAX_TOKENS)
    return tok, len(vocab)


def tiny_stable_diffusion(folder: str | Path, seed: int = 0):
    """A ``StableDiffusionPipeline`` with random weights: text width 32, latent 4x8x8, image 16x16x3."""
    import transformers
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )

    tokenizer, vocab_size = tiny_clip_tokenizer(folder)
    torch.manual_seed(seed)
    text_encoder = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=MAX_TOKENS, bos_token_id=0, eos_token_id=1,
        pad_token_id=1))
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, attention_head_dim=4)
    vae = AutoencoderKL(block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    # Stable Diffusion 1.x's schedule: "scaled_linear" betas from 0.00085 to 0.012
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
