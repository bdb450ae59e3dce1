"""A character-level recurrent language model: embedding -> RNN / GRU / LSTM -> linear head.

Taught in part 3, "3.1 Generating text with a recurrent network, step by step", and trained
on Shakespeare in part 5, "5.1 Practice: a character-level GRU writes Shakespeare". The model
reads one token at a time and keeps everything it has read in a hidden state h_t:

    vanilla RNN (Elman, 1990):  h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
    GRU (Cho et al., 2014):     r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
                                z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
                                n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
                                h_t = (1 - z_t) * n_t + z_t * h_{t-1}
    LSTM (Hochreiter & Schmidhuber, 1997): a gated cell c_t next to h_t; the state is (h, c).

and predicts the next token from it: p(x_{t+1} | x_{<=t}) = softmax(W_out h_t + b_out). The
recurrences themselves are PyTorch's ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` (the notebook of
chapter 3.1 writes the cell equations by hand and checks them against these).

API (the same shape as :class:`aigc_course.models.GPT` where it can be):

* ``model(idx)`` -> logits (B, T, V); ``model(idx, targets)`` -> (logits, mean cross-entropy),
  so :func:`aigc_course.text.batches.estimate_loss` and :func:`aigc_course.train.fit` work unchanged;
* ``model.forward_state(idx, state)`` -> (logits, new_state): continue from a hidden state (for
  truncated backpropagation through time and for generation);
* ``model.hidden_states(idx)`` -> (B, T, hidden): the top layer's h_t at every step;
* ``model.generate(idx, max_new_tokens, temperature, top_k, top_p, generator)``: reads the
  prompt once, then carries the state forward one token at a time, so each new token costs O(1)
  (a GPT re-reads its context window for every token unless it keeps a key/value cache).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aigc_course.runtime import multinomial
from aigc_course.text.decoding import filter_logits

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}

# A hidden state: a tensor (n_layer, B, hidden) for RNN and GRU, a pair (h, c) of them for LSTM.
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


@dataclass
class CharRNNConfig:
    vocab_size: int = 65
    n_embd: int = 64  # size of the character embedding x_t
    hidden: int = 256  # size of the hidden state h_t
    n_layer: int = 2  # stacked recurrent layers (layer l reads the h_t of layer l - 1)
    cell: str = "gru"  # "rnn" (tanh), "gru" or "lstm"
    dropout: float = 0.0  # between stacked layers and before the head

    @classmethod
    def tiny(cls, vocab_size: int = 65, cell: str = "gru") -> CharRNNConfig:
        return cls(vocab_size, n_embd=32, hidden=64, n_layer=1, cell=cell)


class CharRNN(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, vocab_size), one recurrent step per token."""

    def __init__(self, config: CharRNNConfig):
        super().__init__()
        if config.cell not in CELLS:
            raise ValueError(f"Unknown cell {config.cell!r}: choose one of {', '.join(CELLS)}.")
        for name in ("vocab_size", "n_embd", "hidden", "n_layer"):
            if getattr(config, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}.")
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.rnn = CELLS[config.cell](
            config.n_embd, config.hidden, num_layers=config.n_layer, batch_first=True,
            dropout=config.dropout if config.n_layer > 1 else 0.0,
        )
        self.drop = nn.Dropout(config.dropout)
        self.lm_head = nn.Linear(config.hidden, config.vocab_size)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _check_idx(self, idx: torch.Tensor) -> None:
        if not torch.is_tensor(idx) or idx.dim() != 2:
            shape = tuple(idx.shape) if torch.is_tensor(idx) else type(idx).__name__
            raise ValueError(f"CharRNN expects token ids of shape (B, T), got {shape}; "
                             f"use idx[None] for a single sequence.")
        if idx.dtype not in (torch.long, torch.int32, torch.int64):
            raise ValueError(f"CharRNN expects integer token ids, got dtype {idx.dtype}.")
        if idx.size(1) == 0:
            raise ValueError("CharRNN got an empty sequence (T = 0); give it at least one token.")

    def init_state(self, batch_size: int, device: str | torch.device | None = None) -> State:
        """The all-zero state h_0 (and c_0 for an LSTM): (n_layer, batch_size, hidden)."""
        device = device if device is not None else self.lm_head.weight.device
        h = torch.zeros(self.config.n_layer, batch_size, self.config.hidden, device=device)
        return (h, h.clone()) if self.config.cell == "lstm" else h

    def _check_state(self, state: State, batch_size: int) -> None:
        want = (self.config.n_layer, batch_size, self.config.hidden)
        parts = state if isinstance(state, tuple) else (state,)
        if (self.config.cell == "lstm") != isinstance(state, tuple) or any(p.shape != want for p in parts):
            got = tuple(tuple(p.shape) for p in parts)
            kind = "a pair (h, c)" if self.config.cell == "lstm" else "one tensor"
            raise ValueError(f"A {self.config.cell} state is {kind} of shape {want}, got {got}; "
                             f"start from model.init_state({batch_size}).")

    def hidden_states(self, idx: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """The top layer's h_t at every step (B, T, hidden), and the state after the last step."""
        self._check_idx(idx)
        if state is not None:
            self._check_state(state, idx.size(0))
        x = self.tok_emb(idx)  # (B, T, n_embd)
        hs, state = self.rnn(x, state)  # (B, T, hidden); state: (n_layer, B, hidden) [x2 for LSTM]
        return hs, state

    def forward_state(self, idx: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Logits (B, T, V) for ``idx`` read after ``state`` (None: zeros), and the new state."""
        hs, state = self.hidden_states(idx, state)
        return self.lm_head(self.drop(hs)), state

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """Logits (B, T, V) from the zero state; with ``targets`` (B, T) also the mean cross-entropy.

        Targets equal to -100 are ignored. Training on a window with its targets shifted by one is
        teacher forcing: every step reads the true previous character, not a sampled one.
        """
        logits, _ = self.forward_state(idx)
        if targets is None:
            return logits
        if targets.shape != idx.shape:
            raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got {tuple(targets.shape)}.")
        B, T, V = logits.shape
        loss = F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T), ignore_index=-100)
        return logits, loss

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Extend ``idx`` (B, T) by ``max_new_tokens`` sampled tokens; returns (B, T + max_new_tokens).

        1. read the prompt once, which leaves the state h_T and the logits for token T + 1;
        2. divide the logits by ``temperature`` (0 = greedy), keep the top-k / top-p nucleus;
        3. softmax over the vocabulary (the last dimension) and sample one token per sequence;
        4. feed that token alone with the carried state: one recurrent step, O(1) per token
           however long the text already is.
        """
        self._check_idx(idx)
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}.")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}.")
        was_training = self.training
        self.eval()
        logits, state = self.forward_state(idx)  # step 1: the whole prompt in one call
        out = [idx]
        for _ in range(max_new_tokens):
            last = logits[:, -1, :].float()  # (B, V): scores of the next token
            if temperature == 0:
                nxt = last.argmax(-1, keepdim=True)  # (B, 1)
            else:
                probs = F.softmax(filter_logits(last / temperature, top_k, top_p), dim=-1)
                nxt = multinomial(probs, 1, generator)  # (B, 1), drawn on the generator's device
            out.append(nxt)
            logits, state = self.forward_state(nxt, state)  # step 4: one token, carried state
        self.train(was_training)
        return torch.cat(out, dim=1)

    def config_dict(self) -> dict:
        return asdict(self.config)


@torch.no_grad()
def streaming_loss(model: CharRNN, ids: torch.Tensor, n_streams: int = 16, chunk: int = 256) -> float:
    """Mean next-token cross-entropy (nats per token) reading ``ids`` with the state carried along.

    The 1-D sequence ``ids`` is cut into ``n_streams`` contiguous pieces read side by side (a batch
    of B = n_streams), ``chunk`` tokens per call, the state carried from chunk to chunk. Every
    token but the first of each piece is scored with all of its piece before it as context, which
    a recurrent model can use and a fixed-window model cannot.
    """
    if not torch.is_tensor(ids) or ids.dim() != 1:
        raise ValueError(f"ids must be a 1-D tensor of token ids, got {getattr(ids, 'shape', type(ids))}.")
    L = (len(ids) - 1) // n_streams  # tokens scored per stream
    if L < 1 or chunk < 1:
        raise ValueError(f"{len(ids)} tokens are too few for {n_streams} streams (and chunk must be >= 1).")
    device = model.lm_head.weight.device
    x = ids[: n_streams * L].view(n_streams, L).to(device)  # (B, L): stream b = ids[b*L : (b+1)*L]
    y = ids[1 : n_streams * L + 1].view(n_streams, L).to(device)  # the next token of each
    was_training = model.training
    model.eval()
    state, total = None, 0.0
    for s in range(0, L, chunk):
        logits, state = model.forward_state(x[:, s : s + chunk], state)  # (B, c, V)
        total += F.cross_entropy(logits.flatten(0, 1).float(), y[:, s : s + chunk].flatten(), reduction="sum").item()
    model.train(was_training)
    return total / (n_streams * L)
