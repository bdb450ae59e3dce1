"""A sentence VAE: GRU encoder, Gaussian latent code, GRU decoder (Bowman et al., 2016).

Taught in part 5, "A sentence VAE, posterior collapse and latent interpolation" (notebook 5.6).
Bowman, Vilnis, Vinyals, Dai, Jozefowicz and Bengio (2016), "Generating Sentences from a
Continuous Space", trained with the ELBO of Kingma & Welling (2014):

    log p(x) >= E_q(z|x)[log p(x|z)] - KL(q(z|x) || p(z)),   p(z) = N(0, I).

The loss is the negative ELBO, in nats per sentence. The KL term pulls each posterior q(z|x)
towards the prior; a strong autoregressive decoder can model x without z, and the optimiser then
sets q(z|x) = p(z) for every x ("posterior collapse", KL = 0). Bowman et al.'s two remedies are
here: KL annealing (:func:`kl_weight`, a weight rising from 0 to 1) and word dropout (decoder
inputs replaced by [UNK]); ``free_bits`` is the remedy of Kingma et al. (2016). Burda et al.
(2016) count the latent dimensions that carry information with :func:`active_units`.

1. encode: a GRU reads the sentence; its last state gives mu and logvar of q(z|x);
2. sample: z = mu + sigma * eps, eps ~ N(0, I) (the reparameterisation trick);
3. decode: a GRU starts from a state computed from z and also reads z at every step;
4. loss: reconstruction NLL (summed over tokens) + beta * KL, averaged over sentences.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from aigc_course.models.gaussian import gaussian_kl, reparameterize
from aigc_course.runtime import randn


@dataclass
class TextVAEConfig:
    vocab_size: int = 1000
    emb_dim: int = 128
    hidden: int = 256
    latent_dim: int = 16
    word_dropout: float = 0.0  # probability of replacing a decoder input by [UNK] in training
    free_bits: float = 0.0  # nats per latent dimension below which the KL is not penalised
    z_to_input: bool = True  # also feed z to the decoder at every step (not only its first state)
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    unk_id: int = 3

    def __post_init__(self):
        if not 0.0 <= self.word_dropout < 1.0:
            raise ValueError(f"word_dropout must be in [0, 1), got {self.word_dropout}.")
        if self.free_bits < 0:
            raise ValueError(f"free_bits must be >= 0, got {self.free_bits}.")
        for name in ("pad_id", "bos_id", "eos_id", "unk_id"):
            if not 0 <= getattr(self, name) < self.vocab_size:
                raise ValueError(f"{name}={getattr(self, name)} is outside the vocabulary [0, {self.vocab_size}).")


def kl_weight(step: int, warmup: int, kind: str = "linear") -> float:
    """KL annealing weight beta in [0, 1], rising with ``step`` and reaching ~1 at ``warmup``.

    ``linear``: step / warmup, capped at 1. ``sigmoid``: Bowman et al.'s logistic curve,
    1 / (1 + exp(-10 (step / warmup - 1/2))), rescaled to start at 0 and reach exactly 1 at
    ``warmup``. ``warmup=0`` means no annealing (always 1).
    """
    if warmup < 0 or step < 0:
        raise ValueError(f"step and warmup must be >= 0, got step={step}, warmup={warmup}.")
    if kind not in ("linear", "sigmoid"):
        raise ValueError(f"kind must be 'linear' or 'sigmoid', got {kind!r}.")
    if warmup == 0:
        return 1.0
    t = min(step / warmup, 1.0)
    if kind == "linear":
        return t
    s = lambda u: 1.0 / (1.0 + math.exp(-10.0 * (u - 0.5)))  # noqa: E731
    return (s(t) - s(0.0)) / (s(1.0) - s(0.0))


class TextVAE(nn.Module):
    """Padded sentences (B, T) -> latent code z (B, L) -> per-token logits (B, T, vocab)."""

    def __init__(self, config: TextVAEConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.emb_dim, padding_idx=c.pad_id)
        self.encoder = nn.GRU(c.emb_dim, c.hidden, batch_first=True)
        self.to_posterior = nn.Linear(c.hidden, 2 * c.latent_dim)  # -> (mu, logvar)
        self.z_to_hidden = nn.Linear(c.latent_dim, c.hidden)
        dec_in = c.emb_dim + (c.latent_dim if c.z_to_input else 0)
        self.decoder = nn.GRU(dec_in, c.hidden, batch_first=True)
        self.out = nn.Linear(c.hidden, c.vocab_size)

    def _device(self) -> torch.device:
        return self.out.weight.device

    def _check_ids(self, x: torch.Tensor, name: str) -> None:
        if not torch.is_tensor(x) or x.dim() != 2 or x.dtype not in (torch.int32, torch.int64):
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"{name} must be integer token ids of shape (B, T), got {shape}.")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.config.vocab_size):
            raise ValueError(f"{name} has ids outside [0, {self.config.vocab_size}).")

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mu and logvar (B, L) of q(z|x) for right-padded sentences ``src`` (B, T)."""
        self._check_ids(src, "src")
        lengths = (src != self.config.pad_id).sum(1)  # (B,)
        if bool((lengths == 0).any()):
            raise ValueError("src has an empty sentence (only padding): every row needs a token.")
        packed = pack_padded_sequence(self.embed(src), lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        _, h = self.encoder(packed)  # h: (1, B, H), the state after each sentence's last token
        mu, logvar = self.to_posterior(h[0]).chunk(2, dim=-1)  # (B, 2L) -> 2 x (B, L)
        return mu, logvar

    reparameterize = staticmethod(reparameterize)  # z = mu + sigma * eps (models/gaussian.py)

    def decode_logits(self, z: torch.Tensor, tgt_in: torch.Tensor,
                      h: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced decoder: logits (B, T, V) and the last state (1, B, H)."""
        B, T = tgt_in.shape
        x = self.embed(tgt_in)  # (B, T, E)
        if self.config.z_to_input:
            x = torch.cat([x, z[:, None, :].expand(B, T, z.shape[-1])], dim=-1)  # (B, T, E + L)
        if h is None:
            h = torch.tanh(self.z_to_hidden(z))[None]  # (1, B, H)
        y, h = self.decoder(x, h)  # (B, T, H)
        return self.out(y), h

    def word_dropout(self, tgt_in: torch.Tensor) -> torch.Tensor:
        """Replace decoder inputs by [UNK] with probability ``word_dropout`` (not BOS nor PAD)."""
        c = self.config
        if not self.training or c.word_dropout == 0:
            return tgt_in
        drop = torch.rand(tgt_in.shape, device=tgt_in.device) < c.word_dropout
        drop &= (tgt_in != c.pad_id) & (tgt_in != c.bos_id)
        return tgt_in.masked_fill(drop, c.unk_id)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor,
                pad_id: int | None = None, beta: float = 1.0) -> dict[str, torch.Tensor]:
        """Negative ELBO of a batch; ``tgt_in`` = [BOS] x, ``tgt_out`` = x [EOS], padded.

        Returns a dict: ``loss`` (to minimise: rec + beta * KL, per sentence, free bits
        applied), ``rec`` (NLL summed over tokens, mean over sentences), ``rec_per_token``,
        ``kl`` (closed form, nats per sentence), ``kl_per_dim`` (L,), ``nelbo`` (rec + kl),
        ``mu`` and ``logvar`` (B, L).
        """
        pad_id = self.config.pad_id if pad_id is None else pad_id
        self._check_ids(tgt_in, "tgt_in")
        self._check_ids(tgt_out, "tgt_out")
        if tgt_in.shape != tgt_out.shape or tgt_in.shape[0] != src.shape[0]:
            raise ValueError(f"tgt_in {tuple(tgt_in.shape)} and tgt_out {tuple(tgt_out.shape)} must have "
                             f"the same shape and the batch size of src {tuple(src.shape)}.")
        mu, logvar = self.encode(src)
        z = self.reparameterize(mu, logvar)
        logits, _ = self.decode_logits(z, self.word_dropout(tgt_in))  # (B, T, V)
        B, T, V = logits.shape
        nll = F.cross_entropy(logits.reshape(B * T, V).float(), tgt_out.reshape(B * T),
                              ignore_index=pad_id, reduction="none").view(B, T)
        n_tokens = (tgt_out != pad_id).sum()
        rec = nll.sum() / B  # nats per sentence
        kl_dims = gaussian_kl(mu, logvar)  # (B, L)
        kl_per_dim = kl_dims.mean(0)  # (L,)
        kl = kl_per_dim.sum()
        # Free bits (Kingma et al., 2016): a dimension's KL below the floor costs nothing.
        kl_term = kl_per_dim.clamp(min=self.config.free_bits).sum() if self.config.free_bits else kl
        return {"loss": rec + beta * kl_term, "rec": rec, "rec_per_token": nll.sum() / n_tokens,
                "kl": kl, "kl_per_dim": kl_per_dim, "nelbo": rec + kl, "mu": mu, "logvar": logvar}

    @torch.no_grad()
    def decode_greedy(self, z: torch.Tensor, max_len: int = 20) -> torch.Tensor:
        """Greedy decoding from codes z (B, L): ids (B, <= max_len) ending at [EOS], then [PAD]."""
        if z.dim() != 2 or z.shape[1] != self.config.latent_dim:
            raise ValueError(f"z must be (B, {self.config.latent_dim}), got {tuple(z.shape)}.")
        was_training = self.training
        self.eval()
        c = self.config
        z = z.to(self._device())
        tok = torch.full((z.shape[0], 1), c.bos_id, dtype=torch.long, device=z.device)
        h, out = None, []
        done = torch.zeros(z.shape[0], dtype=torch.bool, device=z.device)
        for _ in range(max_len):
            logits, h = self.decode_logits(z, tok, h)  # (B, 1, V)
            tok = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
            out.append(tok.masked_fill(done[:, None], c.pad_id))
            done |= tok[:, 0] == c.eos_id
            if bool(done.all()):
                break
        self.train(was_training)
        return torch.cat(out, dim=1)

    @torch.no_grad()
    def sample_prior(self, n: int, max_len: int = 20, generator: torch.Generator | None = None) -> torch.Tensor:
        """Greedy decodes of n codes drawn from the prior p(z) = N(0, I)."""
        z = randn((n, self.config.latent_dim), generator)  # drawn on the generator's device
        return self.decode_greedy(z, max_len)

    @staticmethod
    def interpolate(z1: torch.Tensor, z2: torch.Tensor, n: int = 5) -> torch.Tensor:
        """n codes on the straight line from z1 to z2 (both (L,) or (1, L)), shape (n, L)."""
        if n < 2:
            raise ValueError(f"n must be >= 2 to include both end points, got {n}.")
        z1, z2 = z1.reshape(-1), z2.reshape(-1)
        if z1.shape != z2.shape:
            raise ValueError(f"z1 {tuple(z1.shape)} and z2 {tuple(z2.shape)} differ in size.")
        t = torch.linspace(0, 1, n, device=z1.device)[:, None]  # (n, 1)
        return (1 - t) * z1 + t * z2

    def config_dict(self) -> dict:
        return asdict(self.config)
