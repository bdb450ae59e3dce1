"""Text-to-image in miniature: Stable Diffusion's anatomy at MNIST size (chapters 3.8, 5.10, 5.11).

A prompt goes through the same four stages as in Stable Diffusion (Rombach et al., 2022):

1. **text encoder**: the prompt's tokens -> the mini-CLIP text embedding (frozen, Radford et al.,
   2021); the empty prompt "" gives the "no condition" embedding;
2. **initial noise**: a Gaussian sample in the space the U-Net denoises (pixels 1x28x28 for
   ``txt2img_mnist``, latents 4x7x7 for ``latent_diffusion_mnist``);
3. **denoising loop**: DDIM steps with classifier-free guidance, eps = eps_u + s (eps_c - eps_u)
   (Ho & Salimans, 2022), two U-Net evaluations per step in one batch;
4. **decoder**: identity for pixel diffusion; the autoencoder's decoder for latent diffusion.

``TextToImage.__call__`` returns the images and, on request, the intermediate states and the
predicted clean images of every step, which the chapters draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from aigc_course.diffusion.samplers import ddim_timesteps, guided_eps, sample_ddim
from aigc_course.diffusion.schedule import NoiseSchedule, ScheduleConfig
from aigc_course.models.mini_clip import MiniCLIP
from aigc_course.text.prompts import encode_prompts
from aigc_course.text.vocab import Vocab


@dataclass
class TextToImage:
    clip: MiniCLIP
    vocab: Vocab
    unet: torch.nn.Module  # eps_theta(x_t, t, cond=...)
    schedule: NoiseSchedule
    shape: tuple[int, ...] = (1, 28, 28)  # of what the U-Net denoises
    decode: object = None  # latents -> images (None: pixel diffusion)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @torch.no_grad()
    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """Stage 1: prompts -> text embeddings (B, D)."""
        return self.clip.encode_text(encode_prompts(self.vocab, prompts).to(self.device))

    @torch.no_grad()
    def __call__(self, prompts: list[str], guidance_scale: float = 3.0, num_steps: int = 50,
                 generator: torch.Generator | None = None, x: torch.Tensor | None = None,
                 return_steps: bool = False):
        """Images (B, 1, 28, 28) in [-1, 1] for ``prompts``; with ``return_steps``, also a dict
        with the timesteps, the states x_t and the predicted x0 (decoded) at each step."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if guidance_scale < 0:
            raise ValueError(f"guidance_scale must be >= 0, got {guidance_scale}.")
        cond = self.encode_text(prompts)  # (B, D)
        null = self.encode_text([""])[0]  # (D,)
        B = len(prompts)
        states, x0s = [], []

        def eps_model(xt, t):  # stage 3's network call: two U-Net evaluations in one batch
            return guided_eps(self.unet, xt, t, scale=guidance_scale, cond=cond, null_cond=null)

        def record(t, xt, eps):
            states.append(self._decode(xt).cpu())
            x0s.append(self._decode(self.schedule.predict_x0(xt, t, eps)).cpu())

        # stage 2 (the initial noise, drawn from ``generator`` unless ``x`` is given) and stage 3
        z = sample_ddim(eps_model, self.schedule, (B, *self.shape), num_steps, generator=generator,
                        device=self.device, clip_x0=self.decode is None, x=x,
                        callback=record if return_steps else None)
        images = self._decode(z).clamp(-1, 1)  # stage 4
        if return_steps:
            return images, {"timesteps": ddim_timesteps(self.schedule.num_steps, num_steps), "states": states, "x0": x0s}
        return images

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return z if self.decode is None else self.decode(z)


def load_text_to_image(name: str = "txt2img_mnist", device=None) -> TextToImage:
    """The pipeline of the shipped (or retrained) weights ``name``: "txt2img_mnist" (pixel
    diffusion) or "latent_diffusion_mnist"; both use the shipped ``mini_clip_mnist``."""
    from aigc_course.pretrained import load_pretrained, load_tokenizer

    model, card = load_pretrained(name, device=device)
    clip, clip_card = load_pretrained(card.get("text_encoder", "mini_clip_mnist"), device=device)
    vocab = load_tokenizer(clip_card["name"])
    schedule = NoiseSchedule(ScheduleConfig(**card["schedule"]))
    if hasattr(model, "autoencoder"):
        return TextToImage(clip, vocab, model, schedule, shape=model.latent_shape, decode=model.to_image)
    return TextToImage(clip, vocab, model, schedule)
