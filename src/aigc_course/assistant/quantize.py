"""Weight-only int8 quantisation: a four times smaller assistant that answers the same way.

Taught in chapter 5.14 ("Building a tiny assistant"). Every ``nn.Linear`` weight W (out, in) is
stored as int8 codes q and one floating-point scale per output channel (per row of W):

    s_o = max_i |W_oi| / 127          (symmetric: the largest weight of a row maps to +-127)
    q_oi = round(W_oi / s_o)  in [-127, 127]
    W_oi ~ s_o * q_oi                 (|W_oi - s_o q_oi| <= s_o / 2, the rounding error)

A row has its own scale because rows differ in range; one scale for the whole matrix would let
a single large row waste the 8 bits of all the others. Activations stay in floating point and
the weights are dequantised inside ``forward`` (``F.linear(x, s * q)``), so the model is 4x
smaller in memory and on disk while computing almost the same function. Real int8 inference
multiplies int8 by int8 on hardware that supports it and treats a few outlier features
separately (Dettmers et al., 2022, "LLM.int8()"); this module keeps only the storage idea.

Tied embeddings. The course's GPT ties its output layer to its token embedding
(``lm_head.weight is tok_emb.weight``). An output channel of ``lm_head`` is a token, and so is a
row of the embedding table, so one set of int8 codes and one scale per token serves both:
:class:`Int8Embedding` looks rows up in the codes of the :class:`Int8Linear` that replaced the
head, and the tying survives quantisation (the matrix is stored once, as in the float model).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

QMAX = 127  # symmetric int8: codes in [-127, 127] (-128 is not used, so +-x round alike)


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(q int8 (out, in), scale float32 (out,)) with weight[o] ~ scale[o] * q[o]."""
    if not torch.is_tensor(weight) or weight.dim() != 2:
        raise ValueError("quantize_per_channel expects a 2-D weight matrix (out_features, in_features), "
                         f"got {getattr(weight, 'shape', type(weight))}.")
    if not torch.is_floating_point(weight):
        raise ValueError(f"quantize_per_channel expects a floating-point weight, got {weight.dtype}.")
    if not torch.isfinite(weight).all():
        raise ValueError("The weight holds inf or NaN values: fix the model before quantising it.")
    w = weight.detach().float()
    amax = w.abs().amax(dim=1)  # (out,): the range of each output channel
    scale = amax / QMAX
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero row keeps q = 0
    q = torch.round(w / scale[:, None]).clamp(-QMAX, QMAX).to(torch.int8)  # (out, in)
    return q, scale


def dequantize(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """scale[o] * q[o, i]: the floating-point weight the int8 codes stand for."""
    return (q.to(dtype) * scale.to(dtype)[:, None])


class Int8Linear(nn.Module):
    """A linear layer whose weight is stored as int8 codes plus one scale per output channel.

    ``forward(x) = x @ (scale * q)^T + bias``: the weight is dequantised on the fly, in the
    dtype of ``x``; the bias (small) stays in floating point. Buffers, not parameters: a
    quantised layer is for inference, not for training.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("q", torch.zeros(out_features, in_features, dtype=torch.int8))
        self.register_buffer("scale", torch.ones(out_features))
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> Int8Linear:
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"Int8Linear.from_linear needs an nn.Linear, got {type(linear).__name__}.")
        layer = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        layer.q, layer.scale = quantize_per_channel(linear.weight)
        if linear.bias is not None:
            layer.bias = linear.bias.detach().float().clone()
        return layer.to(linear.weight.device)

    def dequantized_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize(self.q, self.scale, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantized_weight(x.dtype), bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel"


class Int8Embedding(nn.Module):
    """Token embedding that reads its rows from the int8 codes of a tied :class:`Int8Linear`."""

    def __init__(self, head: Int8Linear):
        super().__init__()
        self.head = [head]  # a plain list: the codes belong to (and are saved with) the head

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        head = self.head[0]
        q_rows = F.embedding(idx, head.q)  # (B, T, C) int8: the code rows of the tokens
        return q_rows.float() * head.scale[idx][..., None]  # each token row times its own scale


def _is_tied(model: nn.Module) -> bool:
    emb, head = getattr(model, "tok_emb", None), getattr(model, "lm_head", None)
    return (isinstance(emb, nn.Embedding) and isinstance(head, nn.Linear)
            and emb.weight is head.weight)


def quantize_int8(model: nn.Module, skip: tuple[str, ...] = ()) -> nn.Module:
    """A quantised copy of ``model``: every ``nn.Linear`` becomes an :class:`Int8Linear`.

    Args:
        model: any module (the course's GPT, a Hugging Face model...); it is not changed.
        skip: names (or name prefixes) of linear layers to keep in floating point.

    If the model ties ``lm_head`` to ``tok_emb`` (the course's GPT), the embedding is replaced by
    an :class:`Int8Embedding` that shares the head's codes, so the tied matrix is stored once.
    Embeddings that are not tied, LayerNorms and biases stay in floating point.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"quantize_int8 needs an nn.Module, got {type(model).__name__}.")
    tied = _is_tied(model)
    qmodel = copy.deepcopy(model).eval()
    n_linear = 0
    for name, module in list(qmodel.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and not any(full == s or full.startswith(s + ".") for s in skip):
                setattr(module, child_name, Int8Linear.from_linear(child))
                n_linear += 1
    if n_linear == 0:
        raise ValueError("quantize_int8 found no nn.Linear layer to quantise in this model "
                         "(or every one is listed in skip).")
    if tied and isinstance(qmodel.lm_head, Int8Linear):
        qmodel.tok_emb = Int8Embedding(qmodel.lm_head)
    return qmodel


def model_bytes(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers, each shared tensor counted once."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model_bytes needs an nn.Module, got {type(model).__name__}.")
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        key = (t.untyped_storage().data_ptr(), t.data_ptr(), t.numel())
        if key in seen:
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    return total


def quantization_error(model: nn.Module, qmodel: nn.Module) -> dict[str, float]:
    """Largest |W - scale * q| of each quantised linear, relative to its rounding bound scale / 2."""
    ref = dict(model.named_modules())
    out = {}
    for name, m in qmodel.named_modules():
        if isinstance(m, Int8Linear) and isinstance(ref.get(name), nn.Linear):
            err = (ref[name].weight.detach().float() - m.dequantized_weight()).abs()  # (out, in)
            out[name] = (err / (m.scale[:, None] / 2)).max().item()
    return out


__all__ = ["Int8Embedding", "Int8Linear", "QMAX", "dequantize", "model_bytes", "quantization_error",
           "quantize_int8", "quantize_per_channel"]
