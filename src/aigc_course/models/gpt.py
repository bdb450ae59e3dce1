"""A GPT-style Transformer language model, small enough to train on a laptop.

Taught in part 2 ("Transformers and large language models") and in the language chapters of
parts 3-5. Built bottom-up: self-attention, MLP, Block, then the model. Follows GPT-2
(Radford et al., 2019): pre-LayerNorm blocks, learned positions, tied input/output embeddings.

Attention is ``softmax(Q K^T / sqrt(d)) V`` (Vaswani et al., 2017, eq. 1), computed by
``F.scaled_dot_product_attention`` (a fused kernel on GPU). With ``causal=True`` each position
sees only itself and the past (a language model); with ``causal=False`` it sees the whole
sequence (the encoder of a masked language model such as BERT).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aigc_course.runtime import multinomial
from aigc_course.text.decoding import filter_logits


@dataclass
class GPTConfig:
    vocab_size: int = 65
    block_size: int = 64  # longest context, in tokens
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True
    causal: bool = True

    @classmethod
    def tiny(cls, vocab_size: int = 65, block_size: int = 32) -> GPTConfig:
        return cls(vocab_size, block_size, n_layer=2, n_head=2, n_embd=64)

    @classmethod
    def small(cls, vocab_size: int = 65, block_size: int = 64) -> GPTConfig:
        return cls(vocab_size, block_size, n_layer=4, n_head=4, n_embd=128)


def combine_with_causal(attn_mask: torch.Tensor, T: int) -> torch.Tensor:
    """``attn_mask`` (broadcastable to (B, nh, T, T); boolean True = may attend, or additive
    floats) restricted to the causal pattern: position i sees positions j <= i only."""
    causal = torch.ones(T, T, dtype=torch.bool, device=attn_mask.device).tril()  # (T, T)
    if attn_mask.dtype == torch.bool:
        return attn_mask & causal
    return attn_mask.masked_fill(~causal, float("-inf"))


class SelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        if cfg.n_embd % cfg.n_head:
            raise ValueError(f"n_embd={cfg.n_embd} must be divisible by n_head={cfg.n_head}.")
        self.n_head, self.causal, self.dropout = cfg.n_head, cfg.causal, cfg.dropout
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, nh, T, hs): each head attends in its own subspace of size hs = C / nh
        q, k, v = (z.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for z in (q, k, v))
        if self.causal and attn_mask is not None:
            # a given mask (e.g. padding) restricts attention further; it never lifts the causal one
            attn_mask = combine_with_causal(attn_mask, T)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=self.causal and attn_mask is None,
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        return self.resid_drop(self.proj(y))


class MLPBlock(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLPBlock(cfg)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), attn_mask)
        return x + self.mlp(self.ln2(x))


def init_gpt2_weights(model: nn.Module, n_layer: int) -> None:
    """GPT-2's initialisation: N(0, 0.02) weights, zero biases, and the residual projections
    scaled by 1/sqrt(2 n_layer) so that the residual stream's variance does not grow with depth."""
    def init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    model.apply(init)  # children before parents, as nn.Module.apply always visits them
    for name, p in model.named_parameters():
        if name.endswith("proj.weight"):
            nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))


class GPT(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, vocab_size)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # weight tying (Press & Wolf, 2017)
        init_gpt2_weights(self, config.n_layer)

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.pos_emb.weight.numel() if non_embedding else n

    def configure_optimizer(self, lr: float, weight_decay: float = 0.1,
                            betas: tuple[float, float] = (0.9, 0.99)) -> torch.optim.AdamW:
        """AdamW with weight decay on matrices only (GPT-2/nanoGPT): embeddings and linear
        weights decay; biases and LayerNorm gains do not (decaying a gain towards 0 is harmful)."""
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=lr, betas=betas)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None):
        """Return logits (B, T, V), and the mean cross-entropy when ``targets`` (B, T) are given.

        Targets equal to -100 are ignored (masked language models score only masked positions).
        """
        if idx.dim() != 2:
            raise ValueError(f"GPT expects token ids of shape (B, T), got {tuple(idx.shape)}.")
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"Sequence length {T} exceeds block_size {self.config.block_size}.")
        pos = torch.arange(T, device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x, attn_mask)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.view(B * T, -1), targets.reshape(B * T), ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Extend ``idx`` (B, T) by sampling ``max_new_tokens`` tokens one at a time.

        temperature < 1 sharpens the distribution, top_k keeps the k likeliest tokens, top_p
        keeps the smallest set whose probability reaches p (nucleus sampling, Holtzman et al.,
        2020). temperature=0 means greedy decoding.
        """
        if not self.config.causal:
            raise RuntimeError("generate() needs a causal model; this one sees the future.")
        was_training = self.training
        self.eval()
        for _ in range(max_new_tokens):
            ctx = idx[:, -self.config.block_size :]
            logits = self(ctx)[:, -1, :].float()  # (B, V): the next-token scores
            if temperature == 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                probs = F.softmax(filter_logits(logits / temperature, top_k, top_p), dim=-1)
                nxt = multinomial(probs, 1, generator)  # on the generator's device
            idx = torch.cat([idx, nxt], dim=1)
        self.train(was_training)
        return idx

    def config_dict(self) -> dict:
        return asdict(self.config)
