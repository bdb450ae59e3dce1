"""Image captioning with attention: a CNN encoder over a 7x7 grid and a GRU decoder that attends.

Taught in part 5, "5.12 Image captioning with attention". Paper: Xu et al. (2015), "Show, attend
and tell: neural image caption generation with visual attention" (soft attention over a grid of
CNN features); the score is the scaled dot product of Vaswani et al. (2017) instead of Xu et al.'s
small MLP (the additive score of chapter 3.2).

The algorithm, numbered as in the chapter:

1. Encode: three conv blocks turn a 28x28 image into a 7x7 grid of C-dimensional vectors, plus a
   learned position vector per cell: the 49 regions r_1..r_49 (keys and values of attention).
2. Start the decoder from h_0 = tanh(W_init mean_i r_i).
3. At step t, attend with the previous state as the query: q = W_q h_{t-1}, k_i = W_k r_i,
   alpha_t = softmax_i(q . k_i / sqrt(d)) over the 49 regions, context c_t = sum_i alpha_ti r_i
   (``F.scaled_dot_product_attention``; the weights themselves are computed only when asked for).
4. Feed [embedding of y_{t-1}; c_t] into a GRU cell: h_t.
5. Predict y_t from tanh(W_o [h_t; c_t; embedding of y_{t-1}]).

Training uses teacher forcing (the true y_{t-1} is fed at every step); :meth:`greedy_decode`
feeds back its own arg-max word and returns the attention map of every word.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

PAD, BOS, EOS = 0, 1, 2  # the ids of aigc_course.text.vocab.Vocab


@dataclass
class CaptionerConfig:
    vocab_size: int = 40
    channels: tuple[int, int, int] = (32, 64, 96)  # the last one is the region size C
    emb: int = 32
    hidden: int = 128
    attn_dim: int = 64
    dropout: float = 0.1
    image_size: int = 28  # 28 -> 14 -> 7: a 7x7 grid

    @classmethod
    def tiny(cls, vocab_size: int) -> CaptionerConfig:
        return cls(vocab_size=vocab_size, channels=(8, 16, 16), emb=8, hidden=16, attn_dim=8, dropout=0.0)


def _block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    return nn.Sequential(*layers, *([nn.MaxPool2d(2)] if pool else []))


def attend(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, need_weights: bool = False):
    """Scaled dot-product attention of one query per image over its regions.

    query (B, d), keys (B, N, d), values (B, N, C) -> context (B, C) and, if ``need_weights``, the
    weights (B, N) (which sum to 1 over the N regions), else None.
    """
    q = query.unsqueeze(1)  # (B, 1, d): one query per image
    context = F.scaled_dot_product_attention(q, keys, values).squeeze(1)  # (B, 1, C) -> (B, C)
    weights = None
    if need_weights:  # softmax(q k^T / sqrt(d)): the same numbers the fused kernel used
        weights = (q @ keys.transpose(1, 2) / math.sqrt(keys.shape[-1])).softmax(-1).squeeze(1)  # (B, N)
    return context, weights


class Captioner(nn.Module):
    """Images (B, 1, 28, 28) in [-1, 1] -> words, attending over 49 image regions per word."""

    def __init__(self, config: CaptionerConfig):
        super().__init__()
        c = config
        if c.vocab_size <= EOS or min(c.emb, c.hidden, c.attn_dim, *c.channels) < 1 or c.image_size % 4:
            raise ValueError(f"Invalid CaptionerConfig {c}: the vocabulary needs the special tokens, sizes must "
                             "be >= 1 and image_size a multiple of 4.")
        self.config = c
        c1, c2, C = c.channels
        g = c.image_size // 4
        self.grid = g
        # step 1: the encoder, 28 -> 14 -> 7 -> 7
        self.encoder = nn.Sequential(_block(1, c1, True), _block(c1, c2, True), _block(c2, C, False))
        self.pos = nn.Parameter(torch.zeros(g * g, C))  # one learned vector per region
        self.init_h = nn.Linear(C, c.hidden)  # step 2
        self.W_q = nn.Linear(c.hidden, c.attn_dim, bias=False)  # step 3
        self.W_k = nn.Linear(C, c.attn_dim, bias=False)
        self.embed = nn.Embedding(c.vocab_size, c.emb, padding_idx=PAD)
        self.cell = nn.GRUCell(c.emb + C, c.hidden)  # step 4
        self.combine = nn.Linear(c.hidden + C + c.emb, c.hidden)  # step 5
        self.out = nn.Linear(c.hidden, c.vocab_size)
        self.drop = nn.Dropout(c.dropout)

    def config_dict(self) -> dict:
        return asdict(self.config)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---- checks -------------------------------------------------------------------------------
    def _check_images(self, images: torch.Tensor) -> None:
        s = self.config.image_size
        if images.dim() != 4 or images.shape[1:] != (1, s, s):
            raise ValueError(f"Captioner expects images (B, 1, {s}, {s}) in [-1, 1], got {tuple(images.shape)}.")

    def _check_tokens(self, tokens: torch.Tensor, B: int) -> None:
        if tokens.dim() != 2 or tokens.shape[0] != B or tokens.dtype != torch.long:
            raise ValueError(f"tgt_in must be a (B={B}, T) tensor of word ids (long), got "
                             f"{tuple(tokens.shape)} {tokens.dtype}.")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.config.vocab_size):
            raise ValueError(f"Word ids must be in 0..{self.config.vocab_size - 1}; check the vocabulary.")

    # ---- steps 1-2 ----------------------------------------------------------------------------
    def encode(self, images: torch.Tensor):
        """Regions (B, 49, C), their keys (B, 49, attn_dim) and h_0 (B, hidden)."""
        self._check_images(images)
        feats = self.encoder(images)  # (B, C, 7, 7)
        regions = feats.flatten(2).transpose(1, 2) + self.pos  # (B, C, 49) -> (B, 49, C)
        h = torch.tanh(self.init_h(regions.mean(1)))  # (B, hidden)
        return (regions, self.W_k(regions)), h

    # ---- steps 3-5: one decoder step ----------------------------------------------------------
    def decode_step(self, y_prev: torch.Tensor, h: torch.Tensor, memory, need_weights: bool = False):
        """y_prev (B,), h (B, hidden) -> logits (B, V), new h (B, hidden), weights (B, 49) or None."""
        regions, keys = memory
        context, alpha = attend(self.W_q(h), keys, regions, need_weights)  # (B, C), (B, 49)
        e = self.drop(self.embed(y_prev))  # (B, E)
        h = self.cell(torch.cat([e, context], -1), h)
        pre = torch.tanh(self.combine(torch.cat([h, context, e], -1)))
        return self.out(self.drop(pre)), h, alpha

    def forward(self, images: torch.Tensor, tgt_in: torch.Tensor, need_weights: bool = False):
        """Teacher forcing: logits (B, T, V) of y_1..y_T given y_0..y_{T-1} = ``tgt_in``, and the
        attention weights (B, T, 49) if ``need_weights`` (else None)."""
        self._check_tokens(tgt_in, images.shape[0])
        memory, h = self.encode(images)
        logits, alphas = [], []
        for t in range(tgt_in.shape[1]):
            lt, h, a = self.decode_step(tgt_in[:, t], h, memory, need_weights)
            logits.append(lt)
            alphas.append(a)
        return torch.stack(logits, 1), (torch.stack(alphas, 1) if need_weights else None)

    def loss(self, batch: dict) -> torch.Tensor:
        """Mean cross-entropy per word (and <eos>) of ``batch`` = {images, tgt_in, tgt_out}."""
        logits, _ = self(batch["images"], batch["tgt_in"])
        return F.cross_entropy(logits.flatten(0, 1), batch["tgt_out"].flatten(), ignore_index=PAD)

    @torch.no_grad()
    def greedy_decode(self, images: torch.Tensor, max_len: int = 16):
        """Free running: feed back the arg-max word. Returns words (B, L) (ending with <eos>, then
        padding) and the attention map of each word (B, L, 7, 7) (zero after <eos>)."""
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}.")
        memory, h = self.encode(images)
        B = images.shape[0]
        y = torch.full((B,), BOS, dtype=torch.long, device=images.device)
        done = torch.zeros(B, dtype=torch.bool, device=images.device)
        tokens, alphas = [], []
        for _ in range(max_len):
            logits, h, a = self.decode_step(y, h, memory, need_weights=True)
            y = logits.argmax(-1).masked_fill(done, PAD)
            tokens.append(y)
            alphas.append(a * (~done)[:, None])
            done |= y == EOS
            if done.all():
                break
        alphas = torch.stack(alphas, 1)  # (B, L, 49)
        return torch.stack(tokens, 1), alphas.view(B, -1, self.grid, self.grid)

    def caption(self, images: torch.Tensor, vocab, max_len: int = 16, batch_size: int = 500):
        """Greedy captions (list of strings) and attention maps (B, L, 7, 7) of ``images``."""
        device = next(self.parameters()).device
        texts, maps = [], []
        for i in range(0, len(images), batch_size):
            tokens, alpha = self.greedy_decode(images[i : i + batch_size].to(device), max_len)
            texts += [vocab.decode(t) for t in tokens]
            maps += list(alpha.cpu())
        L = max(m.shape[0] for m in maps)
        return texts, torch.stack([F.pad(m, (0, 0, 0, 0, 0, L - m.shape[0])) for m in maps])
