"""A miniature CLIP: an image encoder and a text encoder trained to agree (Radford et al., 2021).

Taught in chapter 3.8 (Stable Diffusion's anatomy) and 5.10 (text-to-image). Built bottom-up:

* ``ImageEncoder``: a small CNN, 28x28 -> 14x14 -> 7x7 -> global average -> a vector;
* ``TextEncoder``: token + position embeddings, causal Transformer blocks (the GPT ``Block`` of
  part 3), and the features at the <eos> token, as CLIP's text tower does;
* ``MiniCLIP``: both projected to a shared ``embed_dim`` space and L2-normalised; the logits are
  cosine similarities times a learned temperature exp(logit_scale).

The loss is CLIP's symmetric cross-entropy over the batch's image-text pairs. MNIST has only ten
concepts, so a batch holds many pairs that match although they are not on the diagonal: with
``labels`` given, the target of each row is spread uniformly over all pairs with the same label
(without them, the usual diagonal targets).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aigc_course.models.gpt import Block, GPTConfig
from aigc_course.text.vocab import EOS


@dataclass
class MiniCLIPConfig:
    vocab_size: int = 34
    max_len: int = 8  # tokens per prompt, <eos> included
    embed_dim: int = 64  # the shared space
    image_channels: tuple[int, int, int] = (16, 32, 64)
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 4
    init_temperature: float = 0.07


class ImageEncoder(nn.Module):
    def __init__(self, channels: tuple[int, int, int], out_dim: int):
        super().__init__()
        c1, c2, c3 = channels
        self.net = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.GroupNorm(8, c1), nn.SiLU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.GroupNorm(8, c2), nn.SiLU(),  # 28 -> 14
            nn.Conv2d(c2, c3, 3, stride=2, padding=1), nn.GroupNorm(8, c3), nn.SiLU(),  # 14 -> 7
            nn.Conv2d(c3, c3, 3, padding=1), nn.GroupNorm(8, c3), nn.SiLU(),
        )
        self.proj = nn.Linear(c3, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.net(x).mean(dim=(2, 3)))  # (B, c3, 7, 7) -> (B, c3) -> (B, out_dim)


class TextEncoder(nn.Module):
    def __init__(self, cfg: MiniCLIPConfig):
        super().__init__()
        gcfg = GPTConfig(vocab_size=cfg.vocab_size, block_size=cfg.max_len, n_layer=cfg.text_layers,
                         n_head=cfg.text_heads, n_embd=cfg.text_width, causal=True)
        self.tok = nn.Embedding(cfg.vocab_size, cfg.text_width)
        self.pos = nn.Parameter(torch.zeros(cfg.max_len, cfg.text_width))
        nn.init.normal_(self.pos, std=0.01)
        self.blocks = nn.ModuleList(Block(gcfg) for _ in range(cfg.text_layers))
        self.ln = nn.LayerNorm(cfg.text_width)
        self.proj = nn.Linear(cfg.text_width, cfg.embed_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.tok(tokens) + self.pos[: tokens.shape[1]]  # (B, L, W)
        for block in self.blocks:
            h = block(h)
        h = self.ln(h)
        eos_pos = (tokens == EOS).int().argmax(dim=1)  # first <eos> of each prompt; causal: it saw all words
        return self.proj(h[torch.arange(len(tokens), device=tokens.device), eos_pos])  # (B, embed_dim)


class MiniCLIP(nn.Module):
    """encode_image (B, 1, 28, 28) and encode_text (B, L) -> unit vectors (B, embed_dim)."""

    def __init__(self, config: MiniCLIPConfig):
        super().__init__()
        self.config = cfg = config
        self.image_encoder = ImageEncoder(cfg.image_channels, cfg.embed_dim)
        self.text_encoder = TextEncoder(cfg)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / cfg.init_temperature)))

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1:] != (1, 28, 28):
            raise ValueError(f"MiniCLIP expects images (B, 1, 28, 28) in [-1, 1], got {tuple(x.shape)}.")
        return F.normalize(self.image_encoder(x), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 2 or tokens.shape[1] > self.config.max_len:
            raise ValueError(f"MiniCLIP expects token ids (B, L <= {self.config.max_len}), got {tuple(tokens.shape)}; "
                             "encode prompts with aigc_course.text.prompts.encode_prompts.")
        if not (tokens == EOS).any(dim=1).all():
            raise ValueError("Every prompt needs an <eos> token (encode_prompts adds it).")
        return F.normalize(self.text_encoder(tokens), dim=-1)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B_img, B_txt): scaled cosine similarity of every image with every text."""
        scale = self.logit_scale.clamp(max=math.log(100.0)).exp()  # CLIP caps the temperature at 1/100
        return scale * self.encode_image(images) @ self.encode_text(tokens).T

    def loss(self, images: torch.Tensor, tokens: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Symmetric contrastive loss: mean of the image->text and text->image cross-entropies."""
        logits = self(images, tokens)
        if labels is None:
            target = torch.eye(len(images), device=images.device)
        else:
            same = (labels[:, None] == labels[None, :]).float()  # (B, B): pairs showing the same digit
            target = same / same.sum(dim=1, keepdim=True)
        loss_i = torch.sum(-target * F.log_softmax(logits, dim=1), dim=1).mean()
        loss_t = torch.sum(-target.T * F.log_softmax(logits.T, dim=1), dim=1).mean()
        return (loss_i + loss_t) / 2

    def config_dict(self) -> dict:
        return asdict(self.config)
