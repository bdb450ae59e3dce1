"""Stable Diffusion in diffusers, by hand: a tiny offline pipeline and the real one (chapter 3.8).

* :func:`tiny_stable_diffusion`: the diffusers ``StableDiffusionPipeline`` assembled from configs
  alone, at toy size and with random weights, so that its anatomy (CLIP tokenizer -> CLIP text
  encoder -> U-Net with cross-attention on a 4-channel latent -> VAE decoder, with a scheduler)
  can be inspected and run on a CPU in a fraction of a second, offline. Its images are noise.
* :func:`generate_by_hand`: the pipeline's denoising loop written out, for any such pipeline,
  tiny or real. It takes the device and dtype from the pipeline's U-Net and draws the initial
  noise on the generator's own device, as diffusers does, so it equals
  ``StableDiffusionPipeline(...)`` for the same seed, with a CPU or a CUDA generator.
* :func:`run_real_stable_diffusion`: the released Stable Diffusion 1.5 weights (a download of
  about 2 GB, then a GPU) through the pipeline and through :func:`generate_by_hand`. Everything
  after loading is the code that tests run on the tiny pipeline with ``device="cpu"``.

Needs ``diffusers`` and ``transformers``. The tiny tokenizer is a real ``CLIPTokenizer`` over a
hand-written byte-pair vocabulary: single letters, letters that end a word ("a</w>"), and a few
merges ("lo" + "w</w>" -> "low</w>"); every token a merge produces must be in the vocabulary, or
it would be encoded as unknown.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import torch

from aigc_course.runtime import randn

LETTERS = "abcdefghijklmnopqrstuvwxyz"
MERGES = (("l", "o"), ("lo", "w</w>"), ("d", "i"), ("di", "g"), ("dig", "i"), ("digi", "t</w>"))
MAX_TOKENS = 16  # Stable Diffusion's CLIP tokenizer pads to 77
SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5"  # the released Stable Diffusion 1.5 weights
REAL_PROMPT = "a watercolor painting of a lighthouse at dawn"


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


# ---------------------------------------------------------------- the pipeline's loop, by hand


def encode_text(pipe, prompts: list[str], device, dtype) -> torch.Tensor:
    """Stage 1: (len(prompts), tokens, width), CLIP's last hidden state, one vector per token.

    Each prompt is padded to the tokenizer's fixed length (77 in Stable Diffusion), as
    ``pipe.encode_prompt`` does; the U-Net reads every vector through cross-attention."""
    ids = pipe.tokenizer(prompts, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt").input_ids.to(device)
    return pipe.text_encoder(ids)[0].to(dtype)


def initial_latents(pipe, batch_size: int = 1, height: int | None = None, width: int | None = None,
                    generator: torch.Generator | None = None, device=None, dtype=None) -> torch.Tensor:
    """Stage 2: Gaussian noise (B, C, height / f, width / f) times the scheduler's ``init_noise_sigma``.

    f is ``pipe.vae_scale_factor``; height and width default to the U-Net's ``sample_size * f``,
    device and dtype to the U-Net's. The noise is drawn on the generator's own device, in
    ``dtype``, then moved to ``device`` (:func:`aigc_course.runtime.randn`), as diffusers'
    ``randn_tensor`` does: a CUDA generator draws on the GPU, a CPU one on the CPU, and either
    serves a model on CUDA. Call it after ``scheduler.set_timesteps``, on which some schedulers'
    ``init_noise_sigma`` depends.
    """
    device = pipe.unet.device if device is None else torch.device(device)
    dtype = pipe.unet.dtype if dtype is None else dtype
    f = pipe.vae_scale_factor
    height = height or pipe.unet.config.sample_size * f
    width = width or pipe.unet.config.sample_size * f
    shape = (batch_size, pipe.unet.config.in_channels, int(height) // f, int(width) // f)
    return randn(shape, generator, device, dtype=dtype) * pipe.scheduler.init_noise_sigma


@torch.no_grad()
def generate_by_hand(pipe, prompt: str | list[str], num_steps: int = 30, guidance: float = 7.5,
                     generator: torch.Generator | None = None, height: int | None = None,
                     width: int | None = None, negative_prompt: str = "", device=None, dtype=None):
    """Stable Diffusion written out: text encoder -> latent noise -> guided U-Net loop -> VAE decoder.

    Works on any Stable Diffusion 1.x/2.x ``StableDiffusionPipeline``, the tiny one or the real
    one. Returns ``(latents, images)``: the final latents (B, C, H/f, W/f) and the decoded images
    (B, 3, H, W) in [-1, 1]. ``device`` and ``dtype`` default to the U-Net's, so the same call runs
    the tiny pipeline in float32 on a CPU and the real one in float16 on CUDA; ``generator`` (one,
    not a list) may live on the CPU or on the model's device. With the same seed the latents equal
    ``pipe(prompt, num_inference_steps=num_steps, guidance_scale=guidance, generator=...,
    output_type="latent").images``.
    """
    device = pipe.unet.device if device is None else torch.device(device)
    dtype = pipe.unet.dtype if dtype is None else dtype
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    guided = guidance > 1  # as in diffusers: at 1 or below, the conditional prediction alone
    texts = [negative_prompt] * len(prompts) + prompts if guided else prompts
    text_emb = encode_text(pipe, texts, device, dtype)  # (2B, tokens, width): unconditional half first
    sched = pipe.scheduler
    sched.set_timesteps(num_steps, device=device)
    latents = initial_latents(pipe, len(prompts), height, width, generator, device, dtype)
    # ancestral schedulers add fresh noise at each step: from the same generator, as the pipeline does
    step_kwargs = {"generator": generator} if "generator" in inspect.signature(sched.step).parameters else {}
    for t in sched.timesteps:
        inp = sched.scale_model_input(torch.cat([latents] * 2) if guided else latents, t)
        eps = pipe.unet(inp, t, encoder_hidden_states=text_emb).sample
        if guided:
            eps_u, eps_c = eps.chunk(2)
            eps = eps_u + guidance * (eps_c - eps_u)  # classifier-free guidance
        latents = sched.step(eps, t, latents, **step_kwargs).prev_sample
    images = pipe.vae.decode(latents / pipe.vae.config.scaling_factor).sample  # stage 4
    return latents, images


# ---------------------------------------------------------------- the released weights


def load_stable_diffusion(model_id: str = SD15, device="cuda", dtype: torch.dtype = torch.float16):
    """The released weights from the Hugging Face Hub (about 2 GB in float16), moved to ``device``.

    Half precision is chosen with ``torch_dtype`` and ``variant="fp16"`` (the ``revision="fp16"``
    of older tutorials is deprecated)."""
    from diffusers import StableDiffusionPipeline

    variant = "fp16" if dtype == torch.float16 else None
    return StableDiffusionPipeline.from_pretrained(model_id, torch_dtype=dtype, variant=variant).to(device)


def real_sd_unavailable(device) -> str | None:
    """Why the released weights cannot be loaded and run on ``device`` here, or None."""
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        return "no CUDA GPU"
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return "HF_HUB_OFFLINE is set"
    return None


def run_real_stable_diffusion(prompt: str = REAL_PROMPT, model_id: str = SD15, num_steps: int = 30,
                              guidance: float = 7.5, seed: int = 0, device="cuda",
                              dtype: torch.dtype = torch.float16, pipe=None) -> dict | None:
    """One prompt through ``StableDiffusionPipeline`` and through :func:`generate_by_hand`, each with
    a generator created on ``device`` and seeded with ``seed`` (``torch.Generator("cuda")`` on a GPU).

    With ``pipe=None`` it loads ``model_id`` in ``dtype`` (:func:`load_stable_diffusion`); when that
    cannot work here (:func:`real_sd_unavailable`) it says why and returns None. Given a ``pipe``
    (in tests the tiny one, with ``device="cpu"``) nothing is loaded, and the rest is the same code.
    Returns {"prompt", "pipeline", "by_hand", "max_abs_diff"}: the two images (3, H, W) in [0, 1],
    float32 on the CPU, and their largest difference (large only if the pipeline's safety checker
    blacked out its image).
    """
    if pipe is None:
        reason = real_sd_unavailable(device)
        if reason:
            print(f"Real Stable Diffusion skipped ({reason}).")
            return None
        pipe = load_stable_diffusion(model_id, device, dtype)
    pipe = pipe.to(device)
    ref = pipe(prompt, num_inference_steps=num_steps, guidance_scale=guidance, output_type="pt",
               generator=torch.Generator(device).manual_seed(seed)).images[0]
    _, images = generate_by_hand(pipe, prompt, num_steps, guidance,
                                 generator=torch.Generator(device).manual_seed(seed))
    ref, by_hand = ref.float().cpu(), (images[0].float().cpu() / 2 + 0.5).clamp(0, 1)
    return {"prompt": prompt, "pipeline": ref, "by_hand": by_hand,
            "max_abs_diff": float((ref - by_hand).abs().max())}
