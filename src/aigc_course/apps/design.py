"""Design and creativity: masks, automatic scoring of variations, and the diffusers edit pipelines
(chapter 6.4).

The samplers themselves (SDEdit, RePaint, DDIM inversion) live in
:mod:`aigc_course.diffusion.editing`; this module puts them into a design workflow:

* :func:`sketch`: a rough, blocky version of a digit, the kind of input a designer starts from;
* :func:`make_mask`: the mask shapes the chapter measures inpainting on (1 = regenerate);
* :func:`masked_mse`: the error inside the mask against the untouched originals;
* :func:`score_candidates` and :func:`shortlist`: the automatic half of a review: classifier
  confidence in the brief's class, distance to the source image (a copy is no variation),
  near-duplicates among the candidates; the human picks from the shortlist;
* :func:`edit_pipelines` and :func:`run_real_edits`: the same two jobs with diffusers'
  ``StableDiffusionImg2ImgPipeline`` and ``StableDiffusionInpaintPipeline``, assembled from the
  components of a Stable Diffusion pipeline: the released weights on a GPU, or
  :func:`aigc_course.diffusion.stable_diffusion.tiny_stable_diffusion` in tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

MASK_KINDS = ("centre square", "bottom half", "right half")


def sketch(x: torch.Tensor, block: int = 4, threshold: float = -0.5) -> torch.Tensor:
    """A blocky two-tone sketch of images (B, 1, H, W) in [-1, 1]: each block x block tile becomes
    ink (1) if its mean exceeds ``threshold`` (-0.5: about a quarter of the tile inked), else paper
    (-1), shown at the original size."""
    if x.dim() != 4 or x.shape[-1] % block or x.shape[-2] % block:
        raise ValueError(f"sketch needs images (B, C, H, W) with H and W multiples of block={block}, "
                         f"got {tuple(x.shape)}.")
    tiles = torch.nn.functional.avg_pool2d(x, block)  # (B, C, H / block, W / block)
    ink = torch.where(tiles > threshold, 1.0, -1.0).to(x)
    return torch.nn.functional.interpolate(ink, scale_factor=block, mode="nearest")


def make_mask(kind: str, size: int = 28) -> torch.Tensor:
    """A (1, 1, size, size) float mask, 1 where pixels are regenerated."""
    m = torch.zeros(1, 1, size, size)
    q, h = size // 4, size // 2
    if kind == "centre square":
        m[..., q:size - q, q:size - q] = 1  # the middle half of each side
    elif kind == "bottom half":
        m[..., h:, :] = 1
    elif kind == "right half":
        m[..., :, h:] = 1
    else:
        raise ValueError(f"Unknown mask kind {kind!r}; choose one of {MASK_KINDS}.")
    return m


def masked_mse(x: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean squared error over the pixels where ``mask`` is 1 (mask broadcast over the batch)."""
    if x.shape != reference.shape:
        raise ValueError(f"x {tuple(x.shape)} and reference {tuple(reference.shape)} must have one shape.")
    m = mask.to(x).expand_as(x)
    if m.sum() == 0:
        raise ValueError("The mask is empty: nothing to measure.")
    return ((x - reference) ** 2 * m).sum().item() / m.sum().item()


@dataclass(frozen=True)
class ReviewConfig:
    min_confidence: float = 0.9  # classifier probability of the brief's class
    min_distance: float = 2.0  # feature distance to the source: closer is a copy, not a variation
    duplicate_radius: float = 2.0  # two candidates closer than this (features) are near-duplicates


@torch.no_grad()
def score_candidates(candidates: torch.Tensor, source: torch.Tensor, target: int, net,
                     config: ReviewConfig | None = None) -> dict[str, torch.Tensor]:
    """Automatic scores of N candidate images (N, 1, 28, 28) made from one ``source`` (1, 1, 28, 28).

    Returns tensors of length N: ``confidence`` (softmax probability of ``target``), ``predicted``
    (the classifier's class), ``features`` (N, 64), ``distance`` (Euclidean distance of those
    features to the source's), ``pixel_distance`` (RMS pixel difference) and ``duplicate`` (True
    if a candidate with higher confidence lies within ``duplicate_radius``: greedy, best first)."""
    from aigc_course.metrics.image import features_and_logits

    cfg = config or ReviewConfig()
    if candidates.dim() != 4 or source.shape != (1, *candidates.shape[1:]):
        raise ValueError(f"candidates must be (N, C, H, W) and source (1, C, H, W) of the same image size, got "
                         f"{tuple(candidates.shape)} and {tuple(source.shape)}.")
    feats, logits = features_and_logits(candidates.clamp(-1, 1), net)
    src_feats, _ = features_and_logits(source.clamp(-1, 1), net)
    confidence = logits.softmax(1)[:, target]
    pairwise = torch.cdist(feats, feats)  # (N, N)
    duplicate = torch.zeros(len(feats), dtype=torch.bool)
    kept: list[int] = []
    for i in confidence.argsort(descending=True).tolist():
        if kept and pairwise[i, kept].min() < cfg.duplicate_radius:
            duplicate[i] = True
        else:
            kept.append(i)
    return {"confidence": confidence, "predicted": logits.argmax(1), "features": feats,
            "distance": (feats - src_feats).norm(dim=1),
            "pixel_distance": (candidates - source).flatten(1).pow(2).mean(1).sqrt().cpu(),
            "duplicate": duplicate}


def shortlist(scores: dict[str, torch.Tensor], k: int, config: ReviewConfig | None = None,
              diverse: bool = False) -> tuple[torch.Tensor, dict]:
    """Indices of at most ``k`` candidates that pass every filter, and the count that survives
    each filter in turn (for the funnel the chapter prints).

    Ranked by confidence, most confident first; with ``diverse`` the most confident comes first
    and then, greedily, the passing candidate farthest (in features) from those already chosen
    (farthest-point selection), so that the human sees the range of what was generated."""
    cfg = config or ReviewConfig()
    ok = scores["distance"] >= cfg.min_distance
    funnel = {"generated": len(ok), "not a copy": int(ok.sum())}
    ok &= ~scores["duplicate"]
    funnel["not a duplicate"] = int(ok.sum())
    ok &= scores["confidence"] >= cfg.min_confidence
    funnel["confident"] = int(ok.sum())
    idx = ok.nonzero().squeeze(1)
    idx = idx[scores["confidence"][idx].argsort(descending=True)]
    if diverse and len(idx) > 1:
        feats = scores["features"][idx]
        chosen = [0]
        gap = torch.cdist(feats, feats[:1]).squeeze(1)  # distance of each to the chosen set
        while len(chosen) < min(k, len(idx)):
            nxt = int(gap.argmax())
            chosen.append(nxt)
            gap = torch.minimum(gap, torch.cdist(feats, feats[nxt:nxt + 1]).squeeze(1))
        idx = idx[chosen]
    idx = idx[:k]
    funnel["shortlisted"] = len(idx)
    return idx, funnel


# ---------------------------------------------------------------- the real thing: diffusers


def edit_pipelines(pipe):
    """(img2img, inpaint): diffusers' two edit pipelines sharing the modules of ``pipe`` (a
    ``StableDiffusionPipeline``), so nothing is loaded twice.

    The inpainting pipeline accepts an ordinary 4-channel U-Net: it then blends, after every
    step, the noised latents of the original into the known region (RePaint without resampling,
    in latent space). The dedicated inpainting checkpoints have a 9-channel U-Net (latents, the
    mask and the masked image's latents) and skip the blending."""
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline

    parts = {k: v for k, v in pipe.components.items() if k != "image_encoder"}
    img2img = StableDiffusionImg2ImgPipeline(**parts, requires_safety_checker=False)
    inpaint = StableDiffusionInpaintPipeline(**parts, requires_safety_checker=False)
    for p in (img2img, inpaint):
        p.set_progress_bar_config(disable=True)
    return img2img, inpaint


def centre_mask(height: int, width: int) -> torch.Tensor:
    """A (1, 1, H, W) mask of the centre square (half of each side), 1 = repaint, for diffusers."""
    m = torch.zeros(1, 1, height, width)
    m[..., height // 4:height - height // 4, width // 4:width - width // 4] = 1
    return m


@torch.no_grad()
def run_real_edits(pipe, prompt: str, edit_prompt: str, strengths=(0.3, 0.6, 0.9), num_steps: int = 30,
                   guidance: float = 7.5, seed: int = 0, device="cuda") -> dict:
    """Generate an image for ``prompt``, then edit it: img2img with ``edit_prompt`` at each strength,
    and inpainting of its centre square with ``edit_prompt``.

    Returns {"source", "img2img" (list), "inpaint", "mask", "steps_run" (per strength),
    "outside_change"}: images (3, H, W) in [0, 1], float32 on the CPU, and the mean absolute
    change of the inpainted image outside the mask (not 0: the known region goes through the
    VAE, which is lossy). The same code runs on the tiny pipeline with ``device="cpu"``."""
    pipe = pipe.to(device)
    img2img, inpaint = edit_pipelines(pipe)

    def gen():
        return torch.Generator(device).manual_seed(seed)

    source = pipe(prompt, num_inference_steps=num_steps, guidance_scale=guidance, output_type="pt",
                  generator=gen()).images  # (1, 3, H, W) in [0, 1]
    H, W = source.shape[-2:]
    edits, steps_run = [], []
    for s in strengths:
        img2img.scheduler.set_timesteps(num_steps)
        steps_run.append(len(img2img.get_timesteps(num_steps, s, device)[0]))
        edits.append(img2img(edit_prompt, image=source, strength=s, num_inference_steps=num_steps,
                             guidance_scale=guidance, output_type="pt", generator=gen()).images[0].float().cpu())
    mask = centre_mask(H, W)
    filled = inpaint(edit_prompt, image=source, mask_image=mask, height=H, width=W, num_inference_steps=num_steps,
                     guidance_scale=guidance, output_type="pt", generator=gen()).images[0].float().cpu()
    src = source[0].float().cpu()
    outside = (1 - mask[0]).expand_as(src)
    return {"source": src, "img2img": edits, "strengths": list(strengths), "steps_run": steps_run,
            "inpaint": filled, "mask": mask[0, 0],
            "outside_change": ((filled - src).abs() * outside).sum().item() / outside.sum().item()}
