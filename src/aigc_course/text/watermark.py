"""A green-list watermark for generated text: bias the sampler, then detect with a z-test.

Taught in chapter 6.7, "Risks and responsible deployment". The scheme is the "soft" watermark of
Kirchenbauer et al. (2023), "A Watermark for Large Language Models" (ICML), Algorithms 2 and 3:

Generation, at every step t:

1. hash the previous ``context`` tokens with a secret ``key`` into a random seed;
2. with that seed, draw a random permutation of the vocabulary; its first gamma * |V| tokens are
   the *green list* G_t, the rest are red;
3. add delta to the logits of the green tokens, then sample as usual (temperature, top-k, ...).

Detection needs only the text and the key, not the model: recompute G_t at every position, count
the green tokens |s|_G among the T scored ones, and test "the text was written without knowledge
of the green lists" (then each token is green with probability gamma, independently):

    z = (|s|_G - gamma T) / sqrt(T gamma (1 - gamma))           (paper, equation 2)

and flag the text when z exceeds a threshold (4 in the paper). A small vocabulary changes one
thing: gamma * |V| must be a whole number of tokens, so the z-test uses the *effective* gamma,
round(gamma |V|) / |V| (with the 65 characters of tinyshakespeare, gamma = 0.25 is 16 tokens,
an effective gamma of 0.246).

The sampler is :func:`aigc_course.text.decoding.sample`; the watermark enters through its
``logits_hook``. :func:`substitute` is the simplest attack: replace a share of the tokens.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from aigc_course.text import decoding as dec

TABLE_MAX_VOCAB = 8192  # below this (and context 1) the green lists are precomputed as a (V, V) table


@dataclass
class WatermarkConfig:
    """gamma: share of the vocabulary that is green; delta: bias added to green logits;
    key: the secret; context: how many previous tokens seed the green list (h in the paper)."""

    gamma: float = 0.25
    delta: float = 2.0
    key: int = 15485863
    context: int = 1

    def __post_init__(self):
        if not 0 < self.gamma < 1:
            raise ValueError(f"gamma (the green share of the vocabulary) must lie in (0, 1), got {self.gamma}.")
        if self.delta < 0:
            raise ValueError(f"delta (the bias on green logits) must be >= 0 (0 = no watermark), got {self.delta}.")
        if int(self.context) != self.context or self.context < 1:
            raise ValueError(f"context must be a positive integer number of tokens, got {self.context}.")
        if int(self.key) != self.key:
            raise ValueError(f"key must be an integer, got {self.key!r}.")


def green_size(vocab_size: int, gamma: float) -> int:
    """Number of green tokens, round(gamma |V|); at least 1 and at most |V| - 1."""
    if vocab_size < 2:
        raise ValueError(f"A watermark needs a vocabulary of at least 2 tokens, got {vocab_size}.")
    return min(max(round(gamma * vocab_size), 1), vocab_size - 1)


def effective_gamma(vocab_size: int, gamma: float) -> float:
    """The green share actually used: green_size / |V| (differs from gamma for small vocabularies)."""
    return green_size(vocab_size, gamma) / vocab_size


def seed_of(context: tuple[int, ...], key: int) -> int:
    """Step 1: a keyed hash of the context tokens -> a 63-bit seed (SHA-256, so no key, no list)."""
    digest = hashlib.sha256(f"{key}:{','.join(map(str, context))}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@lru_cache(maxsize=65536)
def _green_ids(context: tuple[int, ...], vocab_size: int, n_green: int, key: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed_of(context, key))
    return torch.randperm(vocab_size, generator=g)[:n_green]  # step 2: the first gamma |V| of a permutation


def green_list(context, vocab_size: int, cfg: WatermarkConfig) -> torch.Tensor:
    """The green token ids (gamma |V|,) after the given context tokens (a sequence of ints)."""
    context = tuple(int(t) for t in context)
    if len(context) != cfg.context:
        raise ValueError(f"The config hashes {cfg.context} previous tokens, got a context of {len(context)}.")
    return _green_ids(context, vocab_size, green_size(vocab_size, cfg.gamma), int(cfg.key))


@lru_cache(maxsize=8)
def _table(vocab_size: int, n_green: int, key: int) -> torch.Tensor:
    table = torch.zeros(vocab_size, vocab_size, dtype=torch.bool)  # (previous token, token)
    for prev in range(vocab_size):
        table[prev, _green_ids((prev,), vocab_size, n_green, key)] = True
    return table


def green_table(vocab_size: int, cfg: WatermarkConfig) -> torch.Tensor:
    """For context 1: a (V, V) bool table, row = previous token, True where the token is green."""
    if cfg.context != 1:
        raise ValueError("green_table exists only for context = 1 (one previous token).")
    return _table(vocab_size, green_size(vocab_size, cfg.gamma), int(cfg.key))


def green_mask(ids: torch.Tensor, vocab_size: int, cfg: WatermarkConfig) -> torch.Tensor:
    """(B, V) bool: the green lists that follow each of the B prefixes ``ids`` (B, T >= context)."""
    if ids.dim() != 2 or ids.shape[1] < cfg.context:
        raise ValueError(f"ids must be (B, T) with T >= context = {cfg.context}; give a prompt of at least "
                         f"{cfg.context} tokens. Got {tuple(ids.shape)}.")
    ctx = ids[:, -cfg.context:].cpu()  # (B, h)
    if cfg.context == 1 and vocab_size <= TABLE_MAX_VOCAB:
        return green_table(vocab_size, cfg)[ctx[:, 0]].to(ids.device)
    mask = torch.zeros(ids.shape[0], vocab_size, dtype=torch.bool)
    for b, row in enumerate(ctx.tolist()):
        mask[b, green_list(row, vocab_size, cfg)] = True
    return mask.to(ids.device)


def watermark_logits(logits: torch.Tensor, ids: torch.Tensor, cfg: WatermarkConfig) -> torch.Tensor:
    """Step 3: logits (B, V) + delta on the green list that follows ``ids`` (B, T)."""
    dec._check_logits(logits)
    if ids.shape[0] != logits.shape[0]:
        raise ValueError(f"ids has {ids.shape[0]} rows but logits {logits.shape[0]}.")
    return logits + cfg.delta * green_mask(ids, logits.shape[-1], cfg).to(logits.dtype)


def watermark_hook(cfg: WatermarkConfig):
    """A ``logits_hook`` for :func:`aigc_course.text.decoding.sample`."""
    return lambda logits, ids: watermark_logits(logits, ids, cfg)


def generate(next_logits: dec.NextLogits, prompt: torch.Tensor, n: int, cfg: WatermarkConfig,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample n watermarked tokens after ``prompt`` (B, T >= context): (B, T + n)."""
    return dec.sample(next_logits, prompt, n, temperature, top_k, top_p, generator=generator,
                      logits_hook=watermark_hook(cfg))


# ---------------------------------------------------------------- detection
def _as_rows(ids) -> list[torch.Tensor]:
    if torch.is_tensor(ids):
        if ids.dim() not in (1, 2):
            raise ValueError(f"ids must be (T,) or (B, T) token ids, got shape {tuple(ids.shape)}.")
        return [ids] if ids.dim() == 1 else list(ids)
    if isinstance(ids, (list, tuple)) and ids and isinstance(ids[0], int):
        return [torch.tensor(ids)]
    return [torch.as_tensor(r) for r in ids]


def green_flags(ids, vocab_size: int, cfg: WatermarkConfig) -> torch.Tensor:
    """For one text (T,): is token t green given the ``context`` tokens before it? (T - context,)."""
    ids = torch.as_tensor(ids).cpu().long()
    if ids.dim() != 1:
        raise ValueError(f"green_flags scores one text (T,), got {tuple(ids.shape)}; loop over rows.")
    h = cfg.context
    if len(ids) <= h:
        return torch.zeros(0, dtype=torch.bool)
    if h == 1 and vocab_size <= TABLE_MAX_VOCAB:
        return green_table(vocab_size, cfg)[ids[:-1], ids[1:]]
    rows = [ids[t - h:t].tolist() for t in range(h, len(ids))]
    return torch.tensor([bool((green_list(c, vocab_size, cfg) == ids[t]).any()) for t, c in zip(range(h, len(ids)), rows)])


def z_score(n_green, n_scored, gamma: float):
    """z = (|s|_G - gamma T) / sqrt(T gamma (1 - gamma)); floats or tensors."""
    if isinstance(n_scored, (int, float)) and n_scored <= 0:
        raise ValueError("No token was scored: the text must be longer than the context.")
    return (n_green - gamma * n_scored) / (n_scored * gamma * (1 - gamma)) ** 0.5


def p_value(z: float) -> float:
    """One-sided P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def count_green(ids, vocab_size: int, cfg: WatermarkConfig) -> tuple[int, int]:
    """(green tokens |s|_G, scored tokens T) of one text (T + context,)."""
    flags = green_flags(ids, vocab_size, cfg)
    return int(flags.sum()), len(flags)


def z_scores(ids, vocab_size: int, cfg: WatermarkConfig) -> torch.Tensor:
    """z of every text in ``ids`` ((B, T) tensor or a list of 1-D id sequences): (B,)."""
    gamma = effective_gamma(vocab_size, cfg.gamma)
    out = []
    for row in _as_rows(ids):
        n_green, n = count_green(row, vocab_size, cfg)
        out.append(z_score(n_green, n, gamma))
    return torch.tensor(out, dtype=torch.float64)


@dataclass
class Detection:
    z: float
    n_green: int
    n_scored: int
    p_value: float
    watermarked: bool


def detect(ids, vocab_size: int, cfg: WatermarkConfig, threshold: float = 4.0) -> Detection:
    """Algorithm 3 on one text (T,): the z-test against ``threshold``."""
    n_green, n = count_green(ids, vocab_size, cfg)
    z = float(z_score(n_green, n, effective_gamma(vocab_size, cfg.gamma)))
    return Detection(z, n_green, n, p_value(z), z > threshold)


def substitute(ids: torch.Tensor, share: float, vocab_size: int,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace round(share * T) random positions of each row of ``ids`` (B, T) by a different random token."""
    if not 0 <= share <= 1:
        raise ValueError(f"share (the fraction of tokens to replace) must lie in [0, 1], got {share}.")
    if ids.dim() != 2:
        raise ValueError(f"ids must be (B, T), got {tuple(ids.shape)}.")
    B, T = ids.shape
    k = round(share * T)
    out = ids.clone()
    for b in range(B):
        pos = torch.randperm(T, generator=generator)[:k]
        shift = torch.randint(1, vocab_size, (k,), generator=generator)  # never the same token
        out[b, pos] = (out[b, pos].cpu() + shift).remainder(vocab_size).to(out.device)
    return out


__all__ = ["Detection", "WatermarkConfig", "count_green", "detect", "effective_gamma", "generate",
           "green_flags", "green_list", "green_mask", "green_size", "green_table", "p_value", "seed_of",
           "substitute", "watermark_hook", "watermark_logits", "z_score", "z_scores"]
