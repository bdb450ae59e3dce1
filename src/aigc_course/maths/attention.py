"""Reference implementations for the math chapter (part 4): sequence probability and attention.

Taught in chapter 4.1 ("Sequence probability, cross-entropy and perplexity") and chapter 4.2
("Attention, derived and measured"). These functions are written from the formulas, for
reading and for checking; the models of the course use the fused
``F.scaled_dot_product_attention``, and the tests assert that both agree.

* ``scaled_dot_product_attention``: softmax(Q K^T / sqrt(d_k) + M) V (Vaswani et al., 2017,
  eq. 1), returning the output *and* the attention weights.
* ``split_heads`` / ``merge_heads``: the reshapes of multi-head attention (§3.2.2).
* ``sinusoidal_positions`` (§3.5) and ``relative_rotation``, the linear map that shifts a
  sinusoidal encoding by k positions; ``rope``, the rotary embedding (Su et al., 2021).
* ``sequence_log_prob``: log p(x_1..T) = sum_t log p(x_t | x_<t), the chain rule.
* ``attention_flops`` and ``time_attention``: the O(T^2) cost, counted and measured.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean (T, T) mask, True where query t may attend to key s (s <= t)."""
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None, causal: bool = False):
    """softmax(q k^T / sqrt(d_k) + M) v, from the formula. Returns (output, weights).

    q: (..., T_q, d_k), k: (..., T_k, d_k), v: (..., T_k, d_v). ``mask`` follows
    ``F.scaled_dot_product_attention``: a boolean mask is True where attending is *allowed*;
    a float mask is added to the scores. ``causal=True`` adds the causal mask (T_q == T_k).
    Output (..., T_q, d_v), weights (..., T_q, T_k), each row of the weights summing to 1.
    """
    if q.dim() < 2 or k.dim() < 2 or v.dim() < 2:
        raise ValueError("q, k, v need at least 2 dims (..., T, d); add a batch dim with x[None].")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share the last dim d_k, got {q.shape[-1]} and {k.shape[-1]}.")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same length T_k, got {k.shape[-2]} and {v.shape[-2]}.")
    d_k = q.shape[-1]
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_k)  # (..., T_q, T_k): scores[t, s] = q_t . k_s
    if causal:
        if q.shape[-2] != k.shape[-2]:
            raise ValueError("causal=True needs T_q == T_k; pass an explicit mask instead.")
        scores = scores.masked_fill(~causal_mask(q.shape[-2], q.device), float("-inf"))
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask
    weights = scores.softmax(dim=-1)  # a_ts = exp(score_ts) / sum_s' exp(score_ts')
    return weights @ v, weights  # (..., T_q, d_v), (..., T_q, T_k)


def split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """(B, T, C) -> (B, n_head, T, C / n_head): each head works in its own slice of C."""
    if x.dim() != 3:
        raise ValueError(f"split_heads expects (B, T, C), got shape {tuple(x.shape)}.")
    B, T, C = x.shape
    if C % n_head:
        raise ValueError(f"C={C} is not divisible by n_head={n_head}; pick n_head dividing C.")
    return x.view(B, T, n_head, C // n_head).transpose(1, 2)  # (B, nh, T, hs)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, n_head, T, hs) -> (B, T, n_head * hs): the heads' outputs side by side."""
    if x.dim() != 4:
        raise ValueError(f"merge_heads expects (B, n_head, T, hs), got shape {tuple(x.shape)}.")
    B, nh, T, hs = x.shape
    return x.transpose(1, 2).reshape(B, T, nh * hs)


def _frequencies(d: int, base: float) -> torch.Tensor:
    if d <= 0 or d % 2:
        raise ValueError(f"d={d} must be a positive even number (sin/cos come in pairs).")
    return base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # omega_i = base^(-2i/d)


def sinusoidal_positions(T: int, d: int, base: float = 10000.0) -> torch.Tensor:
    """The sinusoidal encodings of Vaswani et al. (2017, §3.5), a (T, d) float32 tensor.

    PE[t, 2i] = sin(t * omega_i), PE[t, 2i+1] = cos(t * omega_i), omega_i = base^(-2i/d).
    """
    if T <= 0:
        raise ValueError(f"T={T} must be positive.")
    omega = _frequencies(d, base)  # (d/2,)
    angles = torch.arange(T, dtype=torch.float64)[:, None] * omega  # (T, d/2)
    pe = torch.stack([angles.sin(), angles.cos()], dim=-1)  # (T, d/2, 2): the (sin, cos) pairs
    return pe.reshape(T, d).float()


def relative_rotation(k: int, d: int, base: float = 10000.0) -> torch.Tensor:
    """The (d, d) matrix R_k with PE[t + k] = R_k @ PE[t] for every t (block-diagonal rotations).

    Per frequency pair: (sin w(t+k), cos w(t+k)) = [[cos wk, sin wk], [-sin wk, cos wk]] (sin wt, cos wt).
    R_k depends on the offset k only, never on t: the relative-position property.
    """
    omega = _frequencies(d, base)
    c, s = torch.cos(k * omega), torch.sin(k * omega)
    R = torch.zeros(d, d, dtype=torch.float64)
    idx = torch.arange(0, d, 2)
    R[idx, idx], R[idx, idx + 1] = c, s
    R[idx + 1, idx], R[idx + 1, idx + 1] = -s, c
    return R.float()


def rope(x: torch.Tensor, positions: torch.Tensor | None = None, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding (Su et al., 2021): rotate each pair (x_2i, x_2i+1) by t * omega_i.

    x: (..., T, d) queries or keys; positions: (T,) integers (default 0..T-1). Because rotations
    compose, rope(q)_m . rope(k)_n depends on m - n only.
    """
    T, d = x.shape[-2], x.shape[-1]
    omega = _frequencies(d, base).to(x.device)
    if positions is None:
        positions = torch.arange(T, device=x.device)
    if positions.shape != (T,):
        raise ValueError(f"positions must have shape ({T},), got {tuple(positions.shape)}.")
    angles = positions.to(torch.float64)[:, None] * omega  # (T, d/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]  # (..., T, d/2) each: the two members of every pair
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # (..., T, d/2, 2)
    return out.flatten(-2)  # (..., T, d)


def sequence_log_prob(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(x_1..T) = sum_t log softmax(logits_t)[x_t], the chain rule in log space.

    logits: (T, V) or (B, T, V), the model's scores for position t given x_<t; ids: (T,) or
    (B, T), the tokens that actually came. Returns a scalar or a (B,) tensor, in nats.
    """
    if logits.dim() != ids.dim() + 1 or logits.shape[:-1] != ids.shape:
        raise ValueError(f"logits {tuple(logits.shape)} must be ids {tuple(ids.shape)} plus a "
                         "vocabulary dim: (T, V) with (T,), or (B, T, V) with (B, T).")
    if ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"ids must be integer token ids, got dtype {ids.dtype}.")
    if ids.numel() and (ids.min() < 0 or ids.max() >= logits.shape[-1]):
        raise ValueError(f"ids must lie in [0, {logits.shape[-1]}); got range "
                         f"[{int(ids.min())}, {int(ids.max())}].")
    log_probs = logits.log_softmax(dim=-1)  # (..., T, V)
    return log_probs.gather(-1, ids.long().unsqueeze(-1)).squeeze(-1).sum(-1)


def perplexity(logits: torch.Tensor, ids: torch.Tensor) -> float:
    """exp(mean negative log-likelihood per token): exp(-log p(x) / number of tokens)."""
    return math.exp(-sequence_log_prob(logits, ids).sum().item() / ids.numel())


def attention_flops(T: int, d: int, n_head: int = 1, batch: int = 1) -> int:
    """Multiply-add FLOPs of the two matrix products of attention: 2 * (2 T^2 d) per head.

    Q K^T costs T * T * d multiply-adds, (weights) V again; a multiply-add counts as 2 FLOPs.
    The softmax (a few operations per T^2 entry) and the Q, K, V projections are not counted.
    """
    return batch * n_head * 4 * T * T * d


@dataclass
class AttentionTiming:
    T: int
    seconds: float  # median forward time
    flops: int  # attention_flops(T, d, n_head, batch)
    weight_bytes: int  # size of the (B, nh, T, T) attention weight matrix


def time_attention(T_values: Sequence[int], d: int, n_head: int = 1, batch: int = 1,
                   fn: Callable | None = None, repeats: int = 5, warmup: int = 1,
                   device: torch.device | str | None = None, seed: int = 0,
                   num_threads: int | None = None) -> list[AttentionTiming]:
    """Median forward time of attention on random q, k, v of shape (batch, n_head, T, d), per T.

    ``fn(q, k, v)`` defaults to the explicit ``scaled_dot_product_attention`` (which builds the
    T x T weight matrix). Timed with ``time.perf_counter``, ``warmup`` untimed calls first, the
    median of ``repeats`` calls reported (robust to a busy machine). ``num_threads`` sets the
    CPU threads for the measurement (1 avoids thread-scheduling stalls on a shared machine);
    the previous setting is restored afterwards.
    """
    if repeats < 1 or not T_values or min(T_values) < 1:
        raise ValueError("need repeats >= 1 and a non-empty list of positive sequence lengths.")
    fn = fn or (lambda q, k, v: scaled_dot_product_attention(q, k, v)[0])
    device = torch.device(device or "cpu")
    g = torch.Generator().manual_seed(seed)
    threads_before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        results = [_time_one(T, d, n_head, batch, fn, repeats, warmup, device, g) for T in T_values]
    finally:
        torch.set_num_threads(threads_before)
    return results


def _time_one(T, d, n_head, batch, fn, repeats, warmup, device, g) -> AttentionTiming:
    q, k, v = (torch.randn(batch, n_head, T, d, generator=g).to(device) for _ in range(3))
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()  # time the kernel, not its asynchronous launch
            t0 = time.perf_counter()
            fn(q, k, v)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return AttentionTiming(T, statistics.median(times), attention_flops(T, d, n_head, batch),
                           batch * n_head * T * T * q.element_size())


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log y against log x: y ~ c x^slope."""
    if len(x) != len(y) or len(x) < 2 or min(x) <= 0 or min(y) <= 0:
        raise ValueError("loglog_slope needs two equally long lists of >= 2 positive numbers.")
    lx = torch.tensor([math.log(a) for a in x], dtype=torch.float64)
    ly = torch.tensor([math.log(b) for b in y], dtype=torch.float64)
    lx = lx - lx.mean()
    return float((lx * (ly - ly.mean())).sum() / (lx * lx).sum())


__all__ = [
    "AttentionTiming", "attention_flops", "causal_mask", "loglog_slope", "merge_heads",
    "perplexity", "relative_rotation", "rope", "scaled_dot_product_attention",
    "sequence_log_prob", "sinusoidal_positions", "split_heads", "time_attention",
]
