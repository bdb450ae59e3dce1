"""GRU encoder-decoder with additive (Bahdanau) attention, greedy decoding and beam search.

Taught in part 3, "Sequence to sequence with attention" (3.2), and trained for English to Chinese
in part 5 (5.4). Paper: Bahdanau, Cho and Bengio (2015), "Neural machine translation by jointly
learning to align and translate"; beam search with the length penalty of Wu et al. (2016).

The algorithm, numbered as in the chapter:

1. Encode: embed the source tokens and run a (bidirectional) GRU; the outputs h_1..h_S are the
   keys and values of attention, one per source position.
2. Start the decoder from s_0 = tanh(W_b [final forward state; final backward state]).
3. At each target step t, attend with the previous decoder state as the query:
   e_ts = v^T tanh(W_q s_{t-1} + W_k h_s) (additive score), alpha_t = softmax_s(e_t) over the real
   (non-padding) positions, context c_t = sum_s alpha_ts h_s.
4. Feed [embedding of y_{t-1}; c_t] into the GRU to get s_t (input feeding of the context).
5. Predict y_t from tanh(W_o [s_t; c_t; embedding of y_{t-1}]).

Additive attention is not a scaled dot product, so it does not use
``F.scaled_dot_product_attention``: the score needs the tanh of a sum, computed explicitly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

PAD, BOS, EOS = 0, 1, 2  # the ids of aigc_course.text.vocab.Vocab


@dataclass
class Seq2SeqConfig:
    src_vocab: int = 1000
    tgt_vocab: int = 1000
    emb: int = 128
    hidden: int = 256  # decoder state size; also the size of an encoder output h_s
    n_layer: int = 1
    dropout: float = 0.1
    bidirectional: bool = True  # each direction then has hidden // 2 units
    attention: bool = True  # False: the fixed context of Cho et al. (2014), the bottleneck baseline


class AdditiveAttention(nn.Module):
    """score(q, k_s) = v^T tanh(W_q q + W_k k_s); weights = softmax over unmasked positions."""

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int):
        super().__init__()
        self.W_q = nn.Linear(query_dim, attn_dim, bias=False)
        self.W_k = nn.Linear(key_dim, attn_dim, bias=True)
        self.v = nn.Linear(attn_dim, 1, bias=False)

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        """W_k k_s for all positions (B, S, A): computed once per sentence, reused at every step."""
        return self.W_k(keys)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor | None = None,
                projected_keys: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, Dq), keys = values (B, S, Dk), mask (B, S) True at real tokens.

        Returns the context (B, Dk) and the attention weights (B, S), which sum to 1 over the real
        positions and are exactly 0 on padding.
        """
        if query.dim() != 2 or keys.dim() != 3 or query.shape[0] != keys.shape[0]:
            raise ValueError(f"Expected query (B, Dq) and keys (B, S, Dk), got {tuple(query.shape)} and "
                             f"{tuple(keys.shape)}.")
        kp = self.project_keys(keys) if projected_keys is None else projected_keys
        scores = self.v(torch.tanh(self.W_q(query).unsqueeze(1) + kp)).squeeze(-1)  # (B, S)
        if mask is not None:
            if not mask.any(-1).all():
                raise ValueError("Every row of the attention mask needs at least one real position.")
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = scores.softmax(-1)  # (B, S)
        context = torch.bmm(weights.unsqueeze(1), keys).squeeze(1)  # (B, 1, S) @ (B, S, Dk) -> (B, Dk)
        return context, weights


class Seq2Seq(nn.Module):
    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        c = config
        if c.bidirectional and c.hidden % 2:
            raise ValueError(f"A bidirectional encoder needs an even hidden size, got {c.hidden}.")
        if min(c.src_vocab, c.tgt_vocab) <= EOS or min(c.emb, c.hidden, c.n_layer) < 1:
            raise ValueError(f"Invalid Seq2SeqConfig {c}: vocabularies need the special tokens, sizes >= 1.")
        self.config = c
        dirs = 2 if c.bidirectional else 1
        H = c.hidden
        self.src_emb = nn.Embedding(c.src_vocab, c.emb, padding_idx=PAD)
        self.tgt_emb = nn.Embedding(c.tgt_vocab, c.emb, padding_idx=PAD)
        self.encoder = nn.GRU(c.emb, H // dirs, c.n_layer, batch_first=True, bidirectional=c.bidirectional,
                              dropout=c.dropout if c.n_layer > 1 else 0.0)
        self.bridge = nn.Linear(H, c.n_layer * H)  # step 2: s_0 from the final encoder states
        self.attention = AdditiveAttention(H, H, H) if c.attention else None
        self.decoder = nn.GRU(c.emb + H, H, c.n_layer, batch_first=True,
                              dropout=c.dropout if c.n_layer > 1 else 0.0)
        self.combine = nn.Linear(H + H + c.emb, H)
        self.out = nn.Linear(H, c.tgt_vocab)
        self.drop = nn.Dropout(c.dropout)

    def config_dict(self) -> dict:
        return dataclasses.asdict(self.config)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # ---- checks -------------------------------------------------------------------------------
    def _check(self, src: torch.Tensor, src_len: torch.Tensor | None) -> torch.Tensor:
        if src.dim() != 2 or src.dtype != torch.long:
            raise ValueError(f"src must be a (B, S) tensor of token ids (long), got {tuple(src.shape)} {src.dtype}.")
        if src.numel() and (src.min() < 0 or src.max() >= self.config.src_vocab):
            raise ValueError(f"src ids must be in 0..{self.config.src_vocab - 1}; check the source vocabulary.")
        if src_len is None:
            src_len = (src != PAD).sum(-1)
        src_len = torch.as_tensor(src_len, device=src.device)
        if src_len.shape != (src.shape[0],) or src_len.min() < 1 or src_len.max() > src.shape[1]:
            raise ValueError(f"src_len must be (B,) with 1 <= length <= {src.shape[1]}; got {src_len.tolist()}.")
        return src_len

    # ---- steps 1-2: encode --------------------------------------------------------------------
    def encode(self, src: torch.Tensor, src_len: torch.Tensor | None = None):
        """Returns memory = (enc (B, S, H), projected keys (B, S, H) or None, mask (B, S), summary
        (B, H): the final encoder states) and s_0 (L, B, H)."""
        src_len = self._check(src, src_len)
        B, S = src.shape
        x = self.drop(self.src_emb(src))  # (B, S, E)
        packed = pack_padded_sequence(x, src_len.cpu(), batch_first=True, enforce_sorted=False)
        out, h_n = self.encoder(packed)
        enc, _ = pad_packed_sequence(out, batch_first=True, total_length=S)  # (B, S, H)
        dirs = 2 if self.config.bidirectional else 1
        last = h_n.view(self.config.n_layer, dirs, B, -1)[-1]  # (dirs, B, H/dirs): top layer
        last = last.transpose(0, 1).reshape(B, -1)  # (B, H) = [forward; backward]
        s0 = torch.tanh(self.bridge(last)).view(B, self.config.n_layer, -1).transpose(0, 1).contiguous()
        mask = torch.arange(S, device=src.device)[None, :] < src_len[:, None]  # (B, S)
        keys = self.attention.project_keys(enc) if self.attention is not None else None
        return (enc, keys, mask, last), s0

    # ---- steps 3-5: one decoder step ----------------------------------------------------------
    def decode_step(self, y_prev: torch.Tensor, s: torch.Tensor, memory):
        """y_prev (B,), s (L, B, H) -> logits (B, V), new state (L, B, H), attention (B, S)."""
        enc, keys, mask, summary = memory
        if self.attention is not None:
            context, alpha = self.attention(s[-1], enc, mask, projected_keys=keys)  # (B, H), (B, S)
        else:  # no attention: the same summary vector at every step (weights reported as 0)
            context, alpha = summary, torch.zeros_like(mask, dtype=enc.dtype)
        e = self.drop(self.tgt_emb(y_prev))  # (B, E)
        out, s = self.decoder(torch.cat([e, context], -1).unsqueeze(1), s)  # out (B, 1, H)
        pre = torch.tanh(self.combine(torch.cat([out.squeeze(1), context, e], -1)))
        return self.out(self.drop(pre)), s, alpha

    def forward(self, src: torch.Tensor, src_len: torch.Tensor | None, tgt_in: torch.Tensor):
        """Teacher forcing: logits (B, T, V) of y_1..y_T given the true y_0..y_{T-1} = ``tgt_in``,
        and the attention weights (B, T, S)."""
        if tgt_in.dim() != 2 or tgt_in.shape[0] != src.shape[0]:
            raise ValueError(f"tgt_in must be (B, T) with the batch size of src; got {tuple(tgt_in.shape)}.")
        if tgt_in.numel() and (tgt_in.min() < 0 or tgt_in.max() >= self.config.tgt_vocab):
            raise ValueError(f"tgt_in ids must be in 0..{self.config.tgt_vocab - 1}; check the target vocabulary.")
        memory, s = self.encode(src, src_len)
        logits, alphas = [], []
        for t in range(tgt_in.shape[1]):
            lt, s, a = self.decode_step(tgt_in[:, t], s, memory)
            logits.append(lt)
            alphas.append(a)
        return torch.stack(logits, 1), torch.stack(alphas, 1)

    def loss(self, batch: dict, label_smoothing: float = 0.0) -> torch.Tensor:
        """Mean cross-entropy per target token of a batch from ``aigc_course.text.translation.collate``."""
        logits, _ = self(batch["src"], batch["src_len"], batch["tgt_in"])
        return F.cross_entropy(logits.flatten(0, 1), batch["tgt_out"].flatten(), ignore_index=PAD,
                               label_smoothing=label_smoothing)

    # ---- decoding -----------------------------------------------------------------------------
    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, src_len: torch.Tensor | None = None, max_len: int = 50):
        """Free running: feed back the arg-max token. Returns tokens (B, L) (ending with <eos>,
        then padding) and attention weights (B, L, S)."""
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}.")
        memory, s = self.encode(src, src_len)
        B = src.shape[0]
        y = torch.full((B,), BOS, dtype=torch.long, device=src.device)
        done = torch.zeros(B, dtype=torch.bool, device=src.device)
        tokens, alphas = [], []
        for _ in range(max_len):
            logits, s, a = self.decode_step(y, s, memory)
            y = logits.argmax(-1).masked_fill(done, PAD)
            tokens.append(y)
            alphas.append(a * (~done)[:, None])
            done |= y == EOS
            if done.all():
                break
        return torch.stack(tokens, 1), torch.stack(alphas, 1)

    @torch.no_grad()
    def beam_search(self, src: torch.Tensor, src_len: torch.Tensor | None = None, beam_size: int = 4,
                    max_len: int = 50, length_penalty: float = 1.0):
        """Beam search, one sentence at a time with its ``beam_size`` hypotheses batched.

        A finished hypothesis is scored log p(y | x) / lp(|y|) with the length penalty of Wu et al.
        (2016), lp(n) = ((5 + n) / 6) ** length_penalty (0: raw log-probability). Search stops
        when ``beam_size`` hypotheses have finished or after ``max_len`` tokens. Returns tokens
        (B, L) and attention (B, L, S) padded like :meth:`greedy_decode`, and the scores (B,).
        """
        if beam_size < 1 or max_len < 1:
            raise ValueError(f"beam_size and max_len must be >= 1, got {beam_size} and {max_len}.")
        memory, s0 = self.encode(src, src_len)
        results = [self._beam_one(tuple(None if m is None else m[i : i + 1] for m in memory), s0[:, i : i + 1], beam_size, max_len,
                                  length_penalty) for i in range(src.shape[0])]
        L = max(len(toks) for _, toks, _ in results)
        S = src.shape[1]
        tokens = torch.full((len(results), L), PAD, dtype=torch.long, device=src.device)
        attn = torch.zeros(len(results), L, S, device=src.device)
        for i, (_, toks, a) in enumerate(results):
            tokens[i, : len(toks)] = torch.tensor(toks, device=src.device)
            attn[i, : len(toks)] = a
        scores = torch.tensor([r[0] for r in results])
        return tokens, attn, scores

    def _beam_one(self, memory, s, k: int, max_len: int, alpha: float):
        def lp(n: int) -> float:
            return ((5 + n) / 6) ** alpha

        device = s.device
        seqs = [[]]  # alive hypotheses (token lists, without <bos>)
        attns = [torch.zeros(0, memory[0].shape[1], device=device)]
        logp = torch.zeros(1, device=device)
        y = torch.full((1,), BOS, dtype=torch.long, device=device)
        finished = []  # (score, tokens, attention)
        for t in range(max_len):
            n = len(seqs)
            mem = tuple(None if m is None else m.expand(n, *m.shape[1:]) for m in memory)
            logits, s_new, a = self.decode_step(y, s, mem)
            total = logp[:, None] + logits.float().log_softmax(-1)  # (n, V)
            top, idx = total.flatten().topk(min(2 * k, total.numel()))
            V = total.shape[1]
            alive = []
            for rank, (score, j) in enumerate(zip(top.tolist(), idx.tolist())):
                b, tok = divmod(j, V)
                if tok == EOS:
                    if rank < k:  # an <eos> outside the top k would not have survived the beam
                        finished.append((score / lp(t + 1), seqs[b] + [tok], torch.cat([attns[b], a[b : b + 1]])))
                elif len(alive) < k:
                    alive.append((score, b, tok))
            if len(finished) >= k or not alive:
                break
            beams = torch.tensor([b for _, b, _ in alive], device=device)
            seqs = [seqs[b] + [tok] for _, b, tok in alive]
            attns = [torch.cat([attns[b], a[b : b + 1]]) for _, b, _ in alive]
            logp = torch.tensor([sc for sc, _, _ in alive], device=device)
            y = torch.tensor([tok for _, _, tok in alive], device=device)
            s = s_new[:, beams]
        else:  # max_len reached: unfinished hypotheses compete too
            finished += [(float(logp[i]) / lp(len(seqs[i])), seqs[i], attns[i]) for i in range(len(seqs))]
        return max(finished, key=lambda f: f[0])
