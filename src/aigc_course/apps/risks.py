"""Risks and responsible deployment: detect generated images, measure memorisation, label files.

Taught in chapter 6.7. Three tools the chapter puts into one workflow (the text watermark lives in
:mod:`aigc_course.text.watermark`):

* **A generated-image detector.** :func:`sample_generator` draws digits from the course's shipped
  image generators; :func:`train_detector` trains the course's small CNN (:class:`CNNClassifier`,
  two classes) to tell real MNIST digits from the samples of some of them; :func:`fake_probability`
  scores new images. Wang et al. (2020) showed such detectors generalise across generators only
  with care; the chapter measures the gap on a generator the detector never saw.
* **Memorisation of shipped language models.** :class:`NgramCounts` counts every n-gram of a
  training text (token ids, rolling 64-bit hashes), which gives the duplicate rate of the data
  and, for any generated text, whether its copied n-grams come from duplicated or unique text.
  :func:`extraction_attack` prompts a model with training prefixes and checks whether greedy
  decoding reproduces the true continuation (the "extractable" memorisation of Carlini et al.,
  2021, 2023). :mod:`aigc_course.metrics.memorization` holds the string versions of 1.3.
* **Provenance metadata.** :func:`save_labeled_png` writes a PNG whose text chunk holds a small
  manifest (generator, its card's SHA-256, time) signed with an HMAC over the manifest and the
  pixels: the idea of C2PA content credentials, with a shared secret instead of certificates.
  :func:`verify_label` checks it; re-saving the image drops it, which is why watermarks exist.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from aigc_course.models import CNNClassifier, CNNConfig
from aigc_course.pretrained import find_weights, load_pretrained
from aigc_course.text import decoding as dec
from aigc_course.train import TrainConfig, fit, random_batches

IMAGE_GENERATORS = ("dcgan_mnist", "conv_vae_mnist", "ddpm_mnist", "latent_diffusion_mnist")


# ---------------------------------------------------------------- generated-image detection
@torch.no_grad()
def sample_generator(name: str, n: int, generator: torch.Generator | None = None, ddim_steps: int = 10,
                     guidance: float = 3.0, device="cpu", batch_size: int = 250) -> torch.Tensor:
    """n digits (n, 1, 28, 28) in [-1, 1] from the shipped generator ``name`` (IMAGE_GENERATORS).

    The diffusion models sample with ``ddim_steps`` DDIM steps; the text-conditioned one is asked
    for the ten digits in turn ("a handwritten seven", ...) with classifier-free ``guidance``.
    """
    if name not in IMAGE_GENERATORS:
        raise ValueError(f"Unknown image generator {name!r}; choose one of {IMAGE_GENERATORS}.")
    if n < 1:
        raise ValueError(f"n (the number of images) must be >= 1, got {n}.")
    sizes = [min(batch_size, n - i) for i in range(0, n, batch_size)]
    if name == "latent_diffusion_mnist":
        from aigc_course.diffusion.pipeline import load_text_to_image
        from aigc_course.text.prompts import prompt

        pipe = load_text_to_image(name, device=device)
        words = [prompt(i % 10) for i in range(n)]
        out = [pipe(words[i:i + b], guidance_scale=guidance, num_steps=ddim_steps, generator=generator).cpu()
               for i, b in zip(range(0, n, batch_size), sizes)]
        return torch.cat(out).clamp(-1, 1)
    model, card = load_pretrained(name, device=device)
    if name == "ddpm_mnist":
        from aigc_course.diffusion import NoiseSchedule, ScheduleConfig, sample_ddim

        schedule = NoiseSchedule(ScheduleConfig(**card["schedule"]))
        out = [sample_ddim(model, schedule, (b, 1, 28, 28), num_steps=ddim_steps, generator=generator,
                           device=device).cpu() for b in sizes]
        return torch.cat(out).clamp(-1, 1)
    if name == "conv_vae_mnist":  # Bernoulli decoder: pixel probabilities in [0, 1]
        return torch.cat([model.sample(b, generator=generator).cpu() for b in sizes]) * 2 - 1
    return torch.cat([model.sample(b, generator=generator).cpu() for b in sizes])  # the GAN ends in tanh


@dataclass
class DetectorConfig:
    steps: int = 300
    batch_size: int = 128
    lr: float = 2e-3
    seed: int = 0


def train_detector(real: torch.Tensor, fake: torch.Tensor, cfg: DetectorConfig | None = None,
                   device="cpu") -> CNNClassifier:
    """A two-class CNN (label 1 = generated) trained on real (N, 1, 28, 28) vs fake (M, 1, 28, 28)."""
    cfg = cfg or DetectorConfig()
    for name, x in (("real", real), ("fake", fake)):
        if x.dim() != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"{name} must be images (N, 1, 28, 28) in [-1, 1], got {tuple(x.shape)}.")
    torch.manual_seed(cfg.seed)
    net = CNNClassifier(CNNConfig(n_classes=2)).to(device)
    x = torch.cat([real, fake]).float()
    y = torch.cat([torch.zeros(len(real)), torch.ones(len(fake))]).long()
    batches = random_batches(x, y, batch_size=cfg.batch_size, generator=torch.Generator().manual_seed(cfg.seed))

    def loss_fn(model, batch):
        xb, yb = (t.to(device) for t in batch)
        return torch.nn.functional.cross_entropy(model(xb), yb)

    fit(net, loss_fn, batches, TrainConfig(steps=cfg.steps, lr=cfg.lr, progress=False))
    return net.eval()


@torch.no_grad()
def fake_probability(detector: CNNClassifier, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """P(generated | image) for images (N, 1, 28, 28): (N,)."""
    detector.eval()
    device = next(detector.parameters()).device
    out = [detector(images[i:i + batch_size].to(device)).softmax(-1)[:, 1].cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out)


# ---------------------------------------------------------------- memorisation
def ngram_hashes(ids, n: int) -> np.ndarray:
    """A 64-bit polynomial hash of every n-gram of the 1-D token ids: (len - n + 1,) uint64."""
    a = np.asarray(torch.as_tensor(ids).cpu(), dtype=np.uint64)
    if a.ndim != 1:
        raise ValueError(f"ids must be one sequence (T,), got shape {a.shape}.")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    m = len(a) - n + 1
    if m <= 0:
        return np.zeros(0, dtype=np.uint64)
    h = np.zeros(m, dtype=np.uint64)
    base = np.uint64(1_000_003)
    with np.errstate(over="ignore"):  # arithmetic modulo 2**64 is the point
        for i in range(n):
            h = h * base + a[i:i + m] + np.uint64(1)
    return h


class NgramCounts:
    """How often each n-gram of a training text occurs in it (``count`` of any n-gram hashes)."""

    def __init__(self, ids, n: int):
        self.n = n
        self.position_hashes = ngram_hashes(ids, n)  # (L,) the n-gram starting at each position
        self.hashes, self.counts = np.unique(self.position_hashes, return_counts=True)

    def count(self, hashes: np.ndarray) -> np.ndarray:
        """Occurrences in the training text of each n-gram hash (0 = never seen)."""
        i = np.searchsorted(self.hashes, hashes).clip(max=len(self.hashes) - 1)
        return np.where(self.hashes[i] == hashes, self.counts[i], 0)

    def duplicated(self) -> np.ndarray:
        """(L,) bool: does the n-gram at this position occur elsewhere in the text too?"""
        return self.count(self.position_hashes) > 1

    def duplicate_rate(self) -> float:
        """Share of positions whose n-gram occurs more than once."""
        return float(self.duplicated().mean())

    def copied(self, sample_ids) -> dict[str, int]:
        """A generated text's n-grams split by how often they occur in the training text:
        ``novel`` (0), ``from_unique`` (1), ``from_duplicated`` (2 or more)."""
        c = self.count(ngram_hashes(sample_ids, self.n))
        return {"novel": int((c == 0).sum()), "from_unique": int((c == 1).sum()),
                "from_duplicated": int((c > 1).sum())}


@dataclass
class Extraction:
    starts: torch.Tensor  # (N,) where each prompt begins in the training ids
    exact: torch.Tensor  # (N,) bool: the whole true suffix came out
    matched: torch.Tensor  # (N,) number of leading suffix tokens reproduced

    @property
    def rate(self) -> float:
        return float(self.exact.float().mean())


@torch.no_grad()
def extraction_attack(next_logits: dec.NextLogits, train_ids: torch.Tensor, prefix_len: int, suffix_len: int,
                      n_prompts: int, generator: torch.Generator | None = None, device="cpu",
                      starts: torch.Tensor | None = None) -> Extraction:
    """Prompt with ``prefix_len`` training tokens, decode ``suffix_len`` greedily, compare with the truth.

    ``starts`` (N,) fixes the prompt positions; otherwise ``n_prompts`` are drawn at random.
    """
    if prefix_len < 1 or suffix_len < 1:
        raise ValueError(f"prefix_len and suffix_len must be >= 1, got {prefix_len}, {suffix_len}.")
    span = prefix_len + suffix_len
    if len(train_ids) < span:
        raise ValueError(f"The training ids ({len(train_ids)}) are shorter than prefix + suffix ({span}).")
    if starts is None:
        starts = torch.randint(len(train_ids) - span + 1, (n_prompts,), generator=generator)
    windows = torch.stack([train_ids[s:s + span] for s in starts.tolist()])  # (N, prefix + suffix)
    out = dec.greedy(next_logits, windows[:, :prefix_len].to(device), suffix_len)[:, prefix_len:].cpu()
    same = out == windows[:, prefix_len:]  # (N, suffix)
    matched = same.long().cumprod(1).sum(1)  # leading run of correct tokens
    return Extraction(starts, same.all(1), matched)


def hf_next_logits(model) -> dec.NextLogits:
    """``ids (B, T) -> logits (B, V)`` for a Hugging Face causal LM, so that the course's samplers
    (and the watermark's hook) drive it; the whole prefix is fed at every step (no cache)."""

    @torch.no_grad()
    def next_logits(ids: torch.Tensor) -> torch.Tensor:
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -1, :].float()

    return next_logits


# ---------------------------------------------------------------- provenance metadata
LABEL_KEY = "ai_provenance"  # the PNG text chunk that holds the signed manifest


def card_sha256(name: str) -> str:
    """SHA-256 of the weights card of the shipped model ``name`` (names the exact model version)."""
    return hashlib.sha256(find_weights(name)[1].read_bytes()).hexdigest()


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    if image.dim() == 3 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 2:
        raise ValueError(f"Expected one grayscale image (H, W) or (1, H, W) in [-1, 1], got {tuple(image.shape)}.")
    return ((image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


def _signature(manifest: dict, pixels: bytes, key: bytes) -> str:
    body = json.dumps(manifest, sort_keys=True).encode() + hashlib.sha256(pixels).digest()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def save_labeled_png(path, image: torch.Tensor, manifest: dict, key: bytes) -> Path:
    """Write ``image`` as a PNG with a text chunk holding ``manifest`` and its HMAC-SHA256 signature."""
    from PIL import Image, PngImagePlugin

    pixels = _to_uint8(image)
    info = PngImagePlugin.PngInfo()
    info.add_text(LABEL_KEY, json.dumps({"manifest": manifest, "signature": _signature(manifest, pixels.tobytes(), key)}))
    info.add_text("Description", f"AI-generated by {manifest.get('generator', 'an AI model')}")
    Image.fromarray(pixels, mode="L").save(path, pnginfo=info)
    return Path(path)


def read_label(path) -> dict | None:
    """The signed label of a PNG ({"manifest", "signature"}), or None if the file carries none."""
    from PIL import Image

    with Image.open(path) as im:
        raw = im.text.get(LABEL_KEY) if hasattr(im, "text") else None
    return json.loads(raw) if raw else None


def verify_label(path, key: bytes) -> str:
    """"valid", "no label" (stripped or never labelled) or "invalid" (pixels or manifest changed)."""
    from PIL import Image

    label = read_label(path)
    if label is None:
        return "no label"
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("L")).tobytes()
    ok = hmac.compare_digest(label["signature"], _signature(label["manifest"], pixels, key))
    return "valid" if ok else "invalid"


__all__ = ["DetectorConfig", "Extraction", "IMAGE_GENERATORS", "LABEL_KEY", "NgramCounts", "card_sha256",
           "extraction_attack", "fake_probability", "hf_next_logits", "ngram_hashes", "read_label", "sample_generator",
           "save_labeled_png", "train_detector", "verify_label"]
