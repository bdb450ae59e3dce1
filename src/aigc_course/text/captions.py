"""Captions of MNIST digits built from the label and attributes measured on the pixels.

Taught in part 5, "5.12 Image captioning with attention". A captioning data set such as COCO has
captions written by people, so "is this caption right?" has no exact answer. Here every caption
is computed from the image, so every word of a generated caption can be checked:

1. measure two attributes of each image (:func:`measure_attributes`, images in [-1, 1]):

   * ``thickness``: the mean stroke width in pixels, estimated as ink area / (boundary / 2)
     (a stroke of width w and length L has area w L and about 2 L boundary pixels; ink = pixel
     above mid-grey, boundary = ink pixel with a non-ink 4-neighbour);
   * ``slant``: the shear -mu11 / mu02 of the intensity's central moments (y points down, so a
     positive value means that the top of the digit leans to the right);

2. cut each attribute into three classes at the tertiles of the training set
   (:class:`AttributeBins`), so each class holds a third of the images: thin / medium / thick and
   left / upright / right;
3. write the caption with one of four templates (:data:`TEMPLATES`), chosen at random, so that
   the decoder must learn several word orders ("a thick seven leaning right", "the digit seven ,
   thick and leaning right", ...); :func:`all_phrasings` gives the four phrasings of the same
   content (the multiple references of BLEU), :func:`parse_caption` reads the label and the two
   attributes back from any caption.

The words are tokenized by :func:`aigc_course.text.translation.tokenize_en`, and the vocabulary is a
:class:`aigc_course.text.vocab.Vocab` (:func:`caption_vocab`).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from aigc_course.text.vocab import Vocab, tokenize_en

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
THICKNESS = ("thin", "medium", "thick")
SLANT = ("left", "upright", "right")
ATTRIBUTES = ("thickness", "slant")
SLANT_PHRASE = {"left": "leaning left", "upright": "standing upright", "right": "leaning right"}
SLANT_VERB = {"left": "leans left", "upright": "stands upright", "right": "leans right"}

# {a}: the article of the next word, {digit}, {thick}: thickness word, {slant}: a slant phrase
TEMPLATES = (
    "a {thick} {digit} {slant}",
    "{a_digit} {digit} written with a {thick} stroke , {slant}",
    "the digit {digit} , {thick} and {slant}",
    "a {thick} handwritten {digit} that {slant_verb}",
)


def _check_images(x: torch.Tensor) -> None:
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"Expected grayscale images (N, 1, H, W), got shape {tuple(x.shape)}.")
    if x.numel() and (x.min() < -1.0 - 1e-4 or x.max() > 1.0 + 1e-4):
        raise ValueError("Images must be scaled to [-1, 1] (aigc_course.data.image_tensors' default); "
                         f"got values in [{x.min():.2f}, {x.max():.2f}].")


def measure_attributes(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Stroke width (pixels) and slant (shear) of images ``x`` (N, 1, H, W) in [-1, 1]."""
    _check_images(x)
    x01 = (x.float() + 1) / 2  # intensity in [0, 1], background 0
    ink = (x01 > 0.5).float()
    # interior ink pixels: the pixel and its four neighbours are all ink
    p = F.pad(ink, (1, 1, 1, 1))
    interior = ink * p[..., :-2, 1:-1] * p[..., 2:, 1:-1] * p[..., 1:-1, :-2] * p[..., 1:-1, 2:]
    area = ink.sum((1, 2, 3))
    boundary = (area - interior.sum((1, 2, 3))).clamp_min(1.0)
    thickness = area / (boundary / 2)  # width = area / length, length ~ boundary / 2
    H, W = x.shape[-2:]
    ys = torch.arange(H, dtype=torch.float32).view(1, 1, H, 1)
    xs = torch.arange(W, dtype=torch.float32).view(1, 1, 1, W)
    mass = x01.sum((1, 2, 3)).clamp_min(1e-6)
    cy = (x01 * ys).sum((1, 2, 3)) / mass
    cx = (x01 * xs).sum((1, 2, 3)) / mass
    dy, dx = ys - cy.view(-1, 1, 1, 1), xs - cx.view(-1, 1, 1, 1)
    mu11 = (x01 * dx * dy).sum((1, 2, 3)) / mass  # central moments of the intensity
    mu02 = (x01 * dy * dy).sum((1, 2, 3)) / mass
    slant = -mu11 / mu02.clamp_min(1e-6)  # x shift per unit of height, upwards
    return {"thickness": thickness, "slant": slant}


@dataclass
class AttributeBins:
    """Class edges of each attribute: value < edges[0] -> class 0, < edges[1] -> 1, else 2."""

    thickness: tuple[float, float]
    slant: tuple[float, float]

    @classmethod
    def fit(cls, measures: dict[str, torch.Tensor], quantiles=(1 / 3, 2 / 3)) -> AttributeBins:
        """Edges at the ``quantiles`` of the measured attributes (tertiles: balanced classes)."""
        q = torch.tensor(quantiles, dtype=torch.float32)
        edges = {a: tuple(round(float(v), 4) for v in measures[a].float().quantile(q)) for a in ATTRIBUTES}
        return cls(**edges)

    def classes(self, measures: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Class index (N,) in {0, 1, 2} of every attribute."""
        return {a: torch.bucketize(measures[a].float(), torch.tensor(getattr(self, a)), right=True)
                for a in ATTRIBUTES}

    def to_dict(self) -> dict:
        return {a: list(v) for a, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> AttributeBins:
        return cls(**{a: tuple(d[a]) for a in ATTRIBUTES})


def caption(label: int, thickness: int, slant: int, template: int = 0) -> str:
    """The caption of a digit ``label`` with attribute classes ``thickness`` and ``slant``
    (0, 1, 2 as in :data:`THICKNESS`, :data:`SLANT`) written with ``TEMPLATES[template]``."""
    if not (0 <= label < 10 and 0 <= thickness < 3 and 0 <= slant < 3 and 0 <= template < len(TEMPLATES)):
        raise ValueError(f"Need 0 <= label < 10, classes in 0..2 and 0 <= template < {len(TEMPLATES)}; got "
                         f"{(label, thickness, slant, template)}.")
    digit, side = DIGITS[label], SLANT[slant]
    return TEMPLATES[template].format(digit=digit, thick=THICKNESS[thickness], slant=SLANT_PHRASE[side],
                                      slant_verb=SLANT_VERB[side], a_digit="an" if digit[0] in "aeiou" else "a")


def all_phrasings(label: int, thickness: int, slant: int) -> list[str]:
    """The same content in every template: the references of a multi-reference BLEU."""
    return [caption(label, thickness, slant, k) for k in range(len(TEMPLATES))]


def parse_caption(text: str) -> dict[str, int | None]:
    """Label, thickness and slant classes read from a caption (None where a field is missing or
    ambiguous, e.g. two digit names)."""
    words = tokenize_en(text)

    def find(options):
        hits = {i for i, w in enumerate(options) if w in words}
        return hits.pop() if len(hits) == 1 else None

    return {"label": find(DIGITS), "thickness": find(THICKNESS), "slant": find(SLANT)}


def build_captions(labels: torch.Tensor, classes: dict[str, torch.Tensor], seed: int = 0) -> list[str]:
    """One caption per image, its template drawn by ``random.Random(seed)``: deterministic."""
    if labels.dim() != 1 or any(c.shape != labels.shape for c in classes.values()):
        raise ValueError("labels and every attribute class tensor must be 1-D and of the same length.")
    rng = random.Random(seed)
    t, s = classes["thickness"].tolist(), classes["slant"].tolist()
    return [caption(y, t[i], s[i], rng.randrange(len(TEMPLATES))) for i, y in enumerate(labels.tolist())]


def caption_vocab() -> Vocab:
    """The word vocabulary of every caption the templates can write (independent of the data)."""
    sentences = [tokenize_en(c) for y in range(10) for t in range(3) for s in range(3) for c in all_phrasings(y, t, s)]
    return Vocab.build(sentences, "en")


def encode_captions(vocab: Vocab, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forcing tensors: ``tgt_in`` (N, T) = <bos> y and ``tgt_out`` (N, T) = y <eos>,
    padded with <pad> = 0 (which the loss ignores)."""
    ids = [vocab.encode(t) for t in texts]
    T = max(len(i) for i in ids) + 1
    tgt_in = torch.zeros(len(ids), T, dtype=torch.long)
    tgt_out = torch.zeros(len(ids), T, dtype=torch.long)
    for n, seq in enumerate(ids):
        tgt_in[n, : len(seq) + 1] = torch.tensor([1] + seq)  # <bos> = 1
        tgt_out[n, : len(seq) + 1] = torch.tensor(seq + [2])  # <eos> = 2
    return tgt_in, tgt_out


def attribute_accuracy(texts: list[str], labels: torch.Tensor, classes: dict[str, torch.Tensor]) -> dict[str, float]:
    """Fraction of captions whose parsed label / thickness / slant is right, all three right, and
    that can be parsed at all (every field present exactly once)."""
    parsed = [parse_caption(t) for t in texts]
    truth = {"label": labels.tolist(), **{a: classes[a].tolist() for a in ATTRIBUTES}}
    n = len(texts)
    out = {f"{k}_accuracy": sum(p[k] == truth[k][i] for i, p in enumerate(parsed)) / n for k in truth}
    out["all_correct"] = sum(all(p[k] == truth[k][i] for k in truth) for i, p in enumerate(parsed)) / n
    out["parsed"] = sum(all(v is not None for v in p.values()) for p in parsed) / n
    return out
