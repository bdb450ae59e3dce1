"""A GPT-style Transformer language model, small enough to train on a laptop.

Taught in part 2 ("Transformers and large language models") and in the language chapters of
parts 3-5. Built bottom-up: self-attention, MLP, Block, then the model. Follows GPT-2
(Radford et al., 2019): pre-LayerNorm blocks, learned positions, tied input/output embeddings.

Attention is ``softmax(Q K^T / sqrt(d)) V`` (Vaswani et al., 2017, eq. 1), computed by
``F.scaled_dot_product_attention`` (a fused kernel on GPU). With ``causal=True`` each position
sees only itself and the past (a language model); with ``causal=False`` it sees the whole
sequence (the encoder of a masked language model such as BERT).

The KV cache (chapter 3.9, "From language model to assistant"): when generating, the keys and
values of the tokens already seen never change, so each layer keeps them (``past_kv``) and a new
token computes only its own query, key and value, attending to the cached ones. One step then
costs O(T) instead of recomputing the whole context, O(T^2) attention and O(T) MLP work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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


KV = tuple[torch.Tensor, torch.Tensor]  # one layer's cached keys and values, each (B, nh, P, hs)


def causal_mask(T: int, past: int = 0, device: torch.device | str | None = None) -> torch.Tensor:
    """(T, past + T) booleans, True = may attend: new token i sits at position past + i and sees
    every cached position and the new ones up to itself (a diagonal shifted by ``past``)."""
    return torch.ones(T, past + T, dtype=torch.bool, device=device).tril(diagonal=past)


def combine_with_causal(attn_mask: torch.Tensor, T: int, past: int = 0) -> torch.Tensor:
    """``attn_mask`` (broadcastable to (B, nh, T, past + T); boolean True = may attend, or
    additive floats) restricted to the causal pattern: position i sees positions j <= i only."""
    causal = causal_mask(T, past, attn_mask.device)  # (T, past + T)
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

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                past_kv: KV | None = None, use_cache: bool = False):
        """x (B, T, C) -> (B, T, C); with ``use_cache`` also the keys and values (cached + new)."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, nh, T, hs): each head attends in its own subspace of size hs = C / nh
        q, k, v = (z.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for z in (q, k, v))
        past = 0
        if past_kv is not None:
            past = past_kv[0].shape[2]
            k = torch.cat([past_kv[0], k], dim=2)  # (B, nh, past + T, hs)
            v = torch.cat([past_kv[1], v], dim=2)
        is_causal = self.causal and attn_mask is None and past == 0
        if self.causal and attn_mask is not None:
            # a given mask (e.g. padding) restricts attention further; it never lifts the causal one
            attn_mask = combine_with_causal(attn_mask, T, past)
        elif self.causal and past > 0 and T > 1:
            # SDPA's is_causal aligns the diagonal top-left; after a cache it must be shifted
            attn_mask = causal_mask(T, past, x.device)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        y = self.resid_drop(self.proj(y))
        return (y, (k, v)) if use_cache else y


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

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
                past_kv: KV | None = None, use_cache: bool = False):
        a = self.attn(self.ln1(x), attn_mask, past_kv, use_cache)
        a, present = a if use_cache else (a, None)
        x = x + a
        x = x + self.mlp(self.ln2(x))
        return (x, present) if use_cache else x


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

    def _check_past(self, past_kv: Sequence[KV], B: int) -> int:
        """The cached length P of a ``past_kv`` that fits this model and batch; else a clear error."""
        cfg = self.config
        want = f"a sequence of n_layer={cfg.n_layer} (key, value) pairs, each (B={B}, " \
               f"n_head={cfg.n_head}, P, {cfg.n_embd // cfg.n_head})"
        if not isinstance(past_kv, (list, tuple)) or len(past_kv) != cfg.n_layer:
            raise ValueError(f"past_kv must be {want}: pass the present_kv this model returned.")
        P = None
        for kv in past_kv:
            if not isinstance(kv, (list, tuple)) or len(kv) != 2:
                raise ValueError(f"past_kv must be {want}; got an entry that is not a pair.")
            for z in kv:
                shape_ok = torch.is_tensor(z) and z.dim() == 4 and z.shape[:2] == (B, cfg.n_head) \
                    and z.shape[3] == cfg.n_embd // cfg.n_head
                if not shape_ok or (P is not None and z.shape[2] != P):
                    raise ValueError(f"past_kv must be {want} with the same P in every layer, "
                                     f"got {tuple(getattr(z, 'shape', ()))}.")
                P = z.shape[2]
        return P

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None, past_kv: Sequence[KV] | None = None,
                use_cache: bool = False):
        """Return logits (B, T, V), and the mean cross-entropy when ``targets`` (B, T) are given.

        Targets equal to -100 are ignored (masked language models score only masked positions).
        ``past_kv`` (the ``present_kv`` of an earlier call) holds the keys and values of the P
        tokens before ``idx``: the new tokens take positions P ... P + T - 1 and attend to them.
        With ``use_cache`` the keys and values of all P + T tokens come back as a last element:
        ``(logits, present_kv)`` or ``(logits, loss, present_kv)``.
        """
        if idx.dim() != 2:
            raise ValueError(f"GPT expects token ids of shape (B, T), got {tuple(idx.shape)}.")
        B, T = idx.shape
        P = 0 if past_kv is None else self._check_past(past_kv, B)
        if P + T > self.config.block_size:
            what = f"Sequence length {T}" + (f" after {P} cached tokens" if P else "")
            raise ValueError(f"{what} exceeds block_size {self.config.block_size}; crop the "
                             f"context to the last {self.config.block_size} tokens.")
        pos = torch.arange(P, P + T, device=idx.device)  # positions continue after the cache
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)
        present = []
        for i, block in enumerate(self.blocks):
            layer_past = None if past_kv is None else past_kv[i]
            if use_cache:
                x, kv = block(x, attn_mask, layer_past, use_cache=True)
                present.append(kv)
            else:
                x = block(x, attn_mask, layer_past)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        out = (logits,)
        if targets is not None:
            loss = F.cross_entropy(logits.view(B * T, -1), targets.reshape(B * T), ignore_index=-100)
            out = (logits, loss)
        if use_cache:
            out = (*out, tuple(present))
        return out[0] if len(out) == 1 else out

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 generator: torch.Generator | None = None, use_cache: bool = True) -> torch.Tensor:
        """Extend ``idx`` (B, T) by sampling ``max_new_tokens`` tokens one at a time.

        temperature < 1 sharpens the distribution, top_k keeps the k likeliest tokens, top_p
        keeps the smallest set whose probability reaches p (nucleus sampling, Holtzman et al.,
        2020). temperature=0 means greedy decoding.

        ``use_cache`` keeps each layer's keys and values and feeds only the newest token (same
        tokens as recomputing, faster). Positions are learned and absolute, so once the context
        outgrows ``block_size`` the window slides and every cached key was made at a position
        it no longer has: from then on each step recomputes the last ``block_size`` tokens,
        exactly as ``use_cache=False`` does.
        """
        if not self.config.causal:
            raise RuntimeError("generate() needs a causal model; this one sees the future.")
        was_training = self.training
        self.eval()
        past = None
        for _ in range(max_new_tokens):
            if not use_cache or idx.shape[1] > self.config.block_size:
                logits = self(idx[:, -self.config.block_size :])  # recompute the whole window
            elif past is None:  # prefill: the prompt in one pass, keeping its keys and values
                logits, past = self(idx, past_kv=None, use_cache=True)
            else:  # one new token attends to the cached ones
                logits, past = self(idx[:, -1:], past_kv=past, use_cache=True)
            logits = logits[:, -1, :].float()  # (B, V): the next-token scores
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
