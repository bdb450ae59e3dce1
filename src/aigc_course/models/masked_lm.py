"""A mini BERT: a bidirectional Transformer trained to fill in masked tokens.

Taught in part 5, "Fill in the blank with a masked language model" (notebook 5.5), after the
autoregressive GPT of chapter 5.2. Devlin et al. (2019), "BERT: Pre-training of Deep
Bidirectional Transformers for Language Understanding", section 3.1:

1. choose 15% of the (non-special) tokens of a sentence;
2. replace 80% of the chosen tokens by ``[MASK]``, 10% by a random token, keep 10% unchanged
   (:func:`bert_mask_tokens`, built on :func:`aigc_course.text.masking.mask_tokens`);
3. run a Transformer encoder whose attention sees the whole sentence (``causal=False``);
4. score the cross-entropy only at the chosen positions (every other target is -100).

The network is the course's GPT block (``aigc_course.models.gpt.Block``) with the causal mask
switched off: token + learned position embeddings, ``n_layer`` blocks, a final LayerNorm and an
output head tied to the token embedding. The ``[MASK]`` token is an ordinary row of the
vocabulary, ``config.mask_id`` (by default the last id, ``vocab_size - 1``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aigc_course.models.gpt import Block, GPTConfig, init_gpt2_weights
from aigc_course.runtime import rand, randint
from aigc_course.text.masking import IGNORE_INDEX, mask_tokens


@dataclass
class MaskedLMConfig:
    vocab_size: int = 1000  # includes the special tokens ([PAD], [MASK], ...)
    block_size: int = 32  # longest sentence, in tokens
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.1
    bias: bool = True
    mask_id: int | None = None  # id of [MASK]; None: vocab_size - 1
    pad_id: int | None = None  # id of [PAD]; keys equal to it are never attended to

    def __post_init__(self):
        if self.mask_id is None:
            self.mask_id = self.vocab_size - 1
        for name in ("mask_id", "pad_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < self.vocab_size:
                raise ValueError(f"{name}={value} must be a token id in [0, {self.vocab_size}); "
                                 "add the special token to the vocabulary first.")
        if self.pad_id is not None and self.pad_id == self.mask_id:
            raise ValueError("pad_id and mask_id must be different tokens.")

    @classmethod
    def tiny(cls, vocab_size: int = 100, block_size: int = 16, **kw) -> MaskedLMConfig:
        return cls(vocab_size, block_size, n_layer=2, n_head=2, n_embd=64, **kw)

    def block_config(self) -> GPTConfig:
        """The same blocks as GPT, with attention in both directions."""
        return GPTConfig(self.vocab_size, self.block_size, self.n_layer, self.n_head, self.n_embd,
                         self.dropout, self.bias, causal=False)


def bert_mask_tokens(ids: torch.Tensor, mask_id: int, vocab_size: int, p: float = 0.15,
                     special_ids: tuple[int, ...] = (), replace: float = 0.1, keep: float = 0.1,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption: choose tokens with probability ``p``, then the 80/10/10 rule.

    Args:
        ids: token ids (B, T) without ``mask_id``.
        special_ids: ids never chosen (padding, sentence markers); their targets stay -100.
        replace: fraction of the chosen tokens replaced by a random token (BERT: 0.1).
        keep: fraction of the chosen tokens left unchanged (BERT: 0.1); the rest become [MASK].

    Returns:
        ``(inputs, targets)`` shaped like ``ids``; targets hold the original id at every chosen
        position (also the replaced and kept ones) and -100 elsewhere.
    """
    if not (0.0 <= replace and 0.0 <= keep and replace + keep <= 1.0):
        raise ValueError(f"replace={replace} and keep={keep} must be >= 0 and sum to at most 1.")
    # Step 1: the plain rule of aigc_course.text.masking chooses the positions (all become [MASK]).
    inputs, targets = mask_tokens(ids, mask_id, p, generator)
    special = torch.zeros_like(ids, dtype=torch.bool)
    for s in special_ids:
        special |= ids == s
    inputs = torch.where(special, ids, inputs)
    targets = targets.masked_fill(special, IGNORE_INDEX)
    chosen = targets != IGNORE_INDEX
    # Step 2: of the chosen tokens, a fraction `replace` gets a random id, `keep` its own id.
    u = rand(ids.shape, generator).to(ids.device)  # drawn on the generator's device
    random_ids = randint(vocab_size, ids.shape, generator).to(ids.device)
    bad = random_ids == mask_id
    for s in special_ids:
        bad |= random_ids == s
    random_ids = torch.where(bad, ids, random_ids)  # never insert a special token
    inputs = torch.where(chosen & (u < replace), random_ids, inputs)
    inputs = torch.where(chosen & (u >= replace) & (u < replace + keep), ids, inputs)
    return inputs, targets


class MaskedLM(nn.Module):
    """Token ids (B, T), some of them [MASK] -> logits (B, T, vocab_size) at every position."""

    def __init__(self, config: MaskedLMConfig):
        super().__init__()
        self.config = config
        block_cfg = config.block_config()
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.pos_emb = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(block_cfg) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.tok_emb.weight  # tied input and output embeddings
        init_gpt2_weights(self, config.n_layer)  # the same initialisation as the GPT

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _check_ids(self, idx: torch.Tensor) -> None:
        if not torch.is_tensor(idx) or idx.dim() != 2 or idx.dtype not in (torch.int32, torch.int64):
            shape = tuple(idx.shape) if torch.is_tensor(idx) else type(idx).__name__
            raise ValueError(f"MaskedLM expects integer token ids of shape (B, T), got {shape}.")
        if idx.shape[1] > self.config.block_size:
            raise ValueError(f"Sequence length {idx.shape[1]} exceeds block_size "
                             f"{self.config.block_size}: shorten the input or build a larger model.")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.config.vocab_size):
            raise ValueError(f"Token ids must lie in [0, {self.config.vocab_size}).")

    def padding_mask(self, idx: torch.Tensor) -> torch.Tensor | None:
        """(B, 1, 1, T) boolean mask, True where a key may be attended to (not [PAD])."""
        if self.config.pad_id is None:
            return None
        return (idx != self.config.pad_id)[:, None, None, :]

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """Return logits (B, T, V), and the mean cross-entropy over non-ignored targets.

        ``targets`` (B, T) hold the original token at masked positions and -100 elsewhere, so
        only the masked positions are scored (``bert_mask_tokens`` builds such pairs).
        """
        B, T = idx.shape if torch.is_tensor(idx) and idx.dim() == 2 else (0, 0)
        logits = self.lm_head(self.hidden(idx))  # (B, T, V)
        if targets is None:
            return logits
        self._check_targets(idx, targets)
        loss = F.cross_entropy(logits.view(B * T, -1).float(), targets.reshape(B * T),
                               ignore_index=IGNORE_INDEX)
        return logits, loss

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        """The encoder's output (B, T, C) after the final LayerNorm, before the output head."""
        self._check_ids(idx)
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.tok_emb(idx) + self.pos_emb(pos))  # (B, T, C)
        attn_mask = self.padding_mask(idx)
        for block in self.blocks:
            x = block(x, attn_mask)
        return self.ln_f(x)

    @staticmethod
    def _check_targets(idx: torch.Tensor, targets: torch.Tensor) -> None:
        if targets.shape != idx.shape:
            raise ValueError(f"targets {tuple(targets.shape)} must have the shape of idx {tuple(idx.shape)}.")
        if not bool((targets != IGNORE_INDEX).any()):
            raise ValueError("No target to score: every target is -100 (mask at least one token).")

    def masked_loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of ``forward(idx, targets)``, with the output head applied only where a
        target is scored (about 15% of the positions): the saving BERT's own code makes."""
        self._check_targets(idx, targets)
        h = self.hidden(idx)  # (B, T, C)
        scored = targets != IGNORE_INDEX  # (B, T)
        logits = self.lm_head(h[scored])  # (N, V), N = number of scored positions
        return F.cross_entropy(logits.float(), targets[scored])

    @torch.no_grad()
    def fill_mask(self, ids: torch.Tensor, mask_id: int | None = None, top_k: int = 5):
        """The ``top_k`` likeliest tokens at every [MASK] position of ``ids``.

        Args:
            ids: token ids (T,) or (B, T) containing ``mask_id`` (default ``config.mask_id``).

        Returns:
            ``(positions, probs, token_ids)``: positions (N, 2) as (row, column) of the N masked
            tokens in reading order (row 0 for a 1-D input), probs (N, top_k) in decreasing
            order and token_ids (N, top_k). Each masked position is predicted independently.
        """
        mask_id = self.config.mask_id if mask_id is None else mask_id
        x = ids[None] if ids.dim() == 1 else ids  # (B, T)
        if not bool((x == mask_id).any()):
            raise ValueError(f"ids contain no [MASK] token (id {mask_id}); nothing to fill.")
        if not 1 <= top_k <= self.config.vocab_size:
            raise ValueError(f"top_k must be in [1, {self.config.vocab_size}], got {top_k}.")
        was_training = self.training
        self.eval()
        logits = self(x.to(self.lm_head.weight.device))  # (B, T, V)
        self.train(was_training)
        positions = (x == mask_id).nonzero()  # (N, 2)
        probs = F.softmax(logits[positions[:, 0], positions[:, 1]].float(), dim=-1)  # (N, V)
        top = probs.topk(top_k, dim=-1)
        return positions.cpu(), top.values.cpu(), top.indices.cpu()

    def config_dict(self) -> dict:
        return asdict(self.config)


@torch.no_grad()
def masked_accuracy(model: MaskedLM, inputs: torch.Tensor, targets: torch.Tensor,
                    batch_size: int = 256) -> float:
    """Fraction of scored positions (targets != -100) whose arg-max prediction is the target."""
    was_training = model.training
    model.eval()
    device = model.lm_head.weight.device
    correct = total = 0
    for i in range(0, len(inputs), batch_size):
        x, y = inputs[i : i + batch_size].to(device), targets[i : i + batch_size].to(device)
        scored = y != IGNORE_INDEX
        pred = model(x).argmax(-1)  # (B, T)
        correct += int((pred[scored] == y[scored]).sum())
        total += int(scored.sum())
    model.train(was_training)
    if total == 0:
        raise ValueError("No scored position: every target is -100.")
    return correct / total
