"""Low-rank adapters (LoRA) written from scratch, with exact merge and unmerge.

Taught in chapter 4.6 ("The mathematics of alignment": the rank argument, parameter counts) and
used in chapters 3.9 and 5.14 to fine-tune the course's GPT. LoRA (Hu et al., 2021, "LoRA:
Low-Rank Adaptation of Large Language Models", eq. 3) freezes a pretrained weight W (d_out, d_in)
and learns a low-rank update instead:

    h = W x + (alpha / r) * B A x,    A: (r, d_in),  B: (d_out, r),  r << min(d_in, d_out).

1. A starts random (Kaiming-uniform, as in the paper's code and the ``peft`` library), B starts
   at zero, so the adapted model equals the base model at step 0.
2. Only A and B are trained: r (d_in + d_out) numbers per adapted matrix instead of d_in d_out.
3. After training, ``merge()`` folds the update into the weight (W <- W + (alpha / r) B A), so
   inference costs nothing extra; ``unmerge()`` subtracts it again.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LoRALinear(nn.Module):
    """An ``nn.Linear`` with a frozen weight and a trainable low-rank update (alpha / r) B A.

    Args:
        base: the pretrained linear layer; its weight and bias are frozen (requires_grad False).
        r: the rank of the update, r >= 1.
        alpha: the scale numerator; the update is multiplied by alpha / r, so that one
            learning rate serves several ranks (Hu et al., 2021, section 4.1).
        dropout: dropout applied to the input of the adapter path only (as in ``peft``).
    """

    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}.")
        if not isinstance(r, int) or r <= 0:
            raise ValueError(f"LoRA rank r must be a positive integer, got {r!r}.")
        if alpha <= 0:
            raise ValueError(f"LoRA alpha must be positive, got {alpha!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
        d_out, d_in = base.weight.shape
        if r > min(d_in, d_out):
            raise ValueError(
                f"LoRA rank r={r} exceeds min(d_in, d_out) = {min(d_in, d_out)}; "
                "a full-rank update needs no adapter: pick a smaller r."
            )
        self.base, self.r, self.alpha = base, r, float(alpha)
        self.scaling = self.alpha / r
        for p in base.parameters():
            p.requires_grad_(False)
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(r, d_in, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(d_out, r, device=w.device, dtype=w.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's own default init
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> torch.Tensor:
        """The update (alpha / r) B A, shape (d_out, d_in); its rank is at most r."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)  # W x + b (W already holds B A when merged)
        if self.merged:
            return y
        # x (..., d_in) -> A x (..., r) -> B A x (..., d_out): never forms the d_out x d_in matrix
        return y + self.scaling * (self.dropout(x) @ self.lora_A.T) @ self.lora_B.T

    @torch.no_grad()
    def merge(self) -> LoRALinear:
        """W <- W + (alpha / r) B A; the forward pass then costs exactly as much as the base."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True
        return self

    @torch.no_grad()
    def unmerge(self) -> LoRALinear:
        """Undo :meth:`merge` (exact up to floating-point rounding)."""
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False
        return self

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha:g}, merged={self.merged}"


class TrainableTokens(nn.Module):
    """A frozen embedding table of which only the rows ``ids`` train: the new tokens of a fine-tune.

    Tokens added for fine-tuning (here the chat template's role tokens) never occurred in
    pretraining, so their rows of the table are untrained, and adapters on the linear layers
    cannot change them. As ``peft``'s ``trainable_token_indices`` does, those rows (and only
    they) get their own trainable copy ``rows`` (len(ids), d), initialised from the table.
    ``weight`` is the full table with the rows in place; a tied output head reads it too.
    """

    def __init__(self, base: nn.Embedding, ids):
        super().__init__()
        if not isinstance(base, nn.Embedding):
            raise TypeError(f"TrainableTokens wraps an nn.Embedding, got {type(base).__name__}.")
        ids = torch.as_tensor(list(ids), dtype=torch.long)
        V = base.num_embeddings
        if ids.numel() == 0 or ids.min() < 0 or ids.max() >= V or len(set(ids.tolist())) != ids.numel():
            raise ValueError(f"token ids must be distinct integers in [0, {V}), got {ids.tolist()}.")
        self.base = base
        base.weight.requires_grad_(False)
        self.register_buffer("ids", ids.to(base.weight.device))
        self.rows = nn.Parameter(base.weight.detach()[ids].clone())  # (len(ids), d)

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight.index_copy(0, self.ids, self.rows.to(self.base.weight.dtype))  # (V, d)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return F.embedding(idx, self.weight)


class TiedHead(nn.Module):
    """The output head of a tied model whose embedding is a :class:`TrainableTokens`: logits = x E^T
    with the current table. The table is held in a list, so it is not a second submodule (the
    state dict keeps one copy of the rows)."""

    def __init__(self, emb: TrainableTokens):
        super().__init__()
        self._emb = [emb]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self._emb[0].weight)


def train_token_rows(model: nn.Module, ids) -> nn.Module:
    """Let the rows ``ids`` of ``model.tok_emb`` train (in place; returns ``model``). If the output
    head is tied to the embedding (the course's GPT), it keeps reading the same, updated table.
    Call after :func:`add_lora`, which freezes everything else."""
    emb = getattr(model, "tok_emb", None)
    if not isinstance(emb, nn.Embedding):
        raise ValueError("train_token_rows needs a model with an nn.Embedding named tok_emb "
                         "(the course's GPT); it already has trainable rows or no such embedding.")
    head = getattr(model, "lm_head", None)
    tied = head is not None and getattr(head, "weight", None) is emb.weight
    model.tok_emb = TrainableTokens(emb, ids)
    if tied:
        model.lm_head = TiedHead(model.tok_emb)
    return model


def add_lora(model: nn.Module, r: int = 8, alpha: float = 16,
             targets: tuple[str, ...] = ("qkv", "proj", "fc"), dropout: float = 0.0) -> nn.Module:
    """Freeze every parameter of ``model`` and wrap each ``nn.Linear`` child named in ``targets``.

    Works in place and returns ``model``. For the course's GPT the default targets are the
    attention's ``qkv`` and ``proj`` and the MLP's ``fc`` and ``proj`` in every block. Embeddings,
    LayerNorms and the (tied) output head stay frozen: only the adapters train.
    """
    if not isinstance(r, int) or r <= 0:
        raise ValueError(f"LoRA rank r must be a positive integer, got {r!r}.")
    if isinstance(targets, str):
        targets = (targets,)
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ValueError("The model already has LoRA adapters; call merge_lora first or "
                         "start from a fresh copy of the base model.")
    for p in model.parameters():
        p.requires_grad_(False)
    swaps = [
        (parent, name, child)
        for parent in model.modules()
        for name, child in parent.named_children()
        if name in targets and isinstance(child, nn.Linear)
    ]
    if not swaps:
        linears = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                          if isinstance(m, nn.Linear)})
        raise ValueError(f"No nn.Linear named any of {tuple(targets)} in the model; "
                         f"its linear layers are named {linears}. Pass those as targets.")
    for parent, name, child in swaps:
        setattr(parent, name, LoRALinear(child, r, alpha, dropout))
    return model


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    """Every :class:`LoRALinear` of ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


@torch.no_grad()
def merge_lora(model: nn.Module, unwrap: bool = True) -> nn.Module:
    """Fold every adapter into its weight. With ``unwrap`` (default) each ``LoRALinear`` is
    replaced by its plain ``nn.Linear``, so the model has the base architecture again (and loads
    into it); with ``unwrap=False`` the adapters stay and can be unmerged later."""
    layers = lora_layers(model)
    if not layers:
        raise ValueError("The model has no LoRA adapters to merge (see add_lora).")
    for layer in layers:
        layer.merge()
    if unwrap:
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, LoRALinear):
                    setattr(parent, name, child.base)
        if isinstance(emb := getattr(model, "tok_emb", None), TrainableTokens):
            emb.base.weight.index_copy_(0, emb.ids, emb.rows.to(emb.base.weight.dtype))
            model.tok_emb = emb.base
            if isinstance(model.lm_head, TiedHead):
                model.lm_head = nn.Linear(emb.base.embedding_dim, emb.base.num_embeddings, bias=False)
                model.lm_head.weight = emb.base.weight  # tied again
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter tensors (``...lora_A`` / ``...lora_B``, and the ``rows`` of a
    :class:`TrainableTokens`): what a LoRA checkpoint stores."""
    sd = {k: v for k, v in model.state_dict().items() if k.endswith(("lora_A", "lora_B", "tok_emb.rows"))}
    if not sd:
        raise ValueError("The model has no LoRA adapters (see add_lora).")
    return sd


def trainable_parameters(model: nn.Module) -> int:
    """Number of parameters with ``requires_grad`` (shared tensors counted once)."""
    seen, n = set(), 0
    for p in model.parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            n += p.numel()
    return n


def _linear_weights(model: nn.Module, targets: tuple[str, ...] | None) -> dict[str, nn.Linear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)
            and (targets is None or name.rsplit(".", 1)[-1] in targets)}


@torch.no_grad()
def update_spectrum(base: nn.Module, tuned: nn.Module, targets: tuple[str, ...] | None = None
                    ) -> dict[str, torch.Tensor]:
    """Singular values (descending) of the fine-tuning update Delta W = W_tuned - W_base of every
    ``nn.Linear`` whose name ends in one of ``targets`` (all linears if None). The two models must
    have the same architecture. Computed in float32 on the weights' device."""
    lin_b, lin_t = _linear_weights(base, targets), _linear_weights(tuned, targets)
    if not lin_b or lin_b.keys() != lin_t.keys():
        raise ValueError("base and tuned must be the same architecture with linear layers named "
                         f"{targets}; found {sorted(lin_b)[:4]} and {sorted(lin_t)[:4]}.")
    out = {}
    for name, m in lin_b.items():
        if m.weight.shape != lin_t[name].weight.shape:
            raise ValueError(f"{name}: shapes {tuple(m.weight.shape)} and "
                             f"{tuple(lin_t[name].weight.shape)} differ.")
        delta = lin_t[name].weight.float() - m.weight.float().to(lin_t[name].weight.device)
        out[name] = torch.linalg.svdvals(delta)  # (min(d_out, d_in),)
    return out


def energy_kept(s: torch.Tensor, r: int) -> float:
    """Share of ||Delta W||_F^2 kept by its best rank-r approximation: sum_{i<=r} s_i^2 / sum s_i^2
    (Eckart-Young: the truncated SVD is that best approximation)."""
    if r < 0:
        raise ValueError(f"r must be >= 0, got {r}.")
    e = s.double().square()
    return float(e[:r].sum() / e.sum()) if e.sum() > 0 else 1.0


@torch.no_grad()
def truncate_update(base: nn.Module, tuned: nn.Module, r: int,
                    targets: tuple[str, ...] | None = None, rest: str = "tuned") -> nn.Module:
    """A copy of the model whose targeted linear weights are W_base + (the best rank-r
    approximation of W_tuned - W_base). Every other parameter (embeddings, norms, biases) comes
    from ``tuned`` (``rest="tuned"``) or from ``base`` (``rest="base"``: what a rank-r LoRA on
    ``targets`` could at best have learnt, layer by layer, if the full fine-tune is the goal)."""
    import copy

    if r < 1:
        raise ValueError(f"r must be >= 1, got {r}.")
    if rest not in ("tuned", "base"):
        raise ValueError(f"rest must be 'tuned' or 'base', got {rest!r}.")
    model = copy.deepcopy(tuned if rest == "tuned" else base)
    lin_b, lin_m = _linear_weights(base, targets), _linear_weights(model, targets)
    lin_t = _linear_weights(tuned, targets)
    if not lin_b or not lin_b.keys() == lin_m.keys() == lin_t.keys():
        raise ValueError(f"base and tuned must be the same architecture (targets {targets}).")
    for name, m in lin_m.items():
        w_base = lin_b[name].weight.float().to(m.weight.device)
        w_tuned = lin_t[name].weight.float().to(m.weight.device)
        U, S, Vh = torch.linalg.svd(w_tuned - w_base, full_matrices=False)
        delta_r = (U[:, :r] * S[:r]) @ Vh[:r]  # (d_out, r) diag(S) (r, d_in)
        m.weight.copy_((w_base + delta_r).to(m.weight.dtype))
    return model


__all__ = ["LoRALinear", "TiedHead", "TrainableTokens", "add_lora", "energy_kept", "lora_layers", "lora_state_dict",
           "merge_lora", "train_token_rows", "trainable_parameters", "truncate_update",
           "update_spectrum"]
