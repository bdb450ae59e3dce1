"""A VAE for tables with continuous and categorical columns (in the spirit of TVAE).

Taught in chapter 6.5, "Health and medicine", where it generates synthetic patient records.
Xu, Skoularidou, Cuesta-Infante and Veeramachaneni (2019), "Modeling Tabular Data using
Conditional GAN" (NeurIPS), introduce TVAE: a VAE whose decoder gives each column the
likelihood its type calls for. Here:

* continuous columns (already transformed, e.g. to normal scores): a Gaussian with a mean from
  the decoder and one learned standard deviation per column, -log p = 1/2 ((x - m)/s)^2 + log s
  + 1/2 log(2 pi);
* categorical columns (a binary label is one with 2 classes): a softmax over the classes,
  -log p = cross-entropy.

1. encode: [continuous, one-hot categories] -> MLP -> mu, logvar of q(z|x);
2. sample: z = mu + sigma * eps (``models/gaussian.py``);
3. decode: z -> MLP -> means of the continuous columns and logits of each categorical column;
4. loss: negative ELBO = reconstruction NLL (summed over columns) + beta * KL, mean over rows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aigc_course.models.gaussian import gaussian_kl, reparameterize
from aigc_course.models.mlp import MLP, MLPConfig
from aigc_course.runtime import multinomial, randn


@dataclass
class TabularVAEConfig:
    n_continuous: int = 30
    categories: tuple[int, ...] = (2,)  # number of classes of each categorical column
    hidden: int = 128
    n_layers: int = 2  # hidden layers of the encoder and of the decoder
    latent_dim: int = 8
    beta: float = 1.0  # weight of the KL term
    min_log_sigma: float = -3.0  # floor of the learned log standard deviations

    def __post_init__(self):
        self.categories = tuple(int(k) for k in self.categories)
        if self.n_continuous < 0 or any(k < 2 for k in self.categories):
            raise ValueError(f"n_continuous must be >= 0 and every categorical column needs >= 2 classes, "
                             f"got n_continuous={self.n_continuous}, categories={self.categories}.")
        if self.n_continuous + len(self.categories) == 0:
            raise ValueError("The table has no column: set n_continuous or categories.")
        if self.latent_dim < 1 or self.hidden < 1 or self.n_layers < 1 or self.beta < 0:
            raise ValueError("latent_dim, hidden and n_layers must be >= 1 and beta >= 0.")

    @property
    def in_dim(self) -> int:
        """Width of one encoded row: the continuous values and the one-hot categories."""
        return self.n_continuous + sum(self.categories)

    @classmethod
    def tiny(cls, n_continuous: int = 4, categories: tuple[int, ...] = (2,)) -> TabularVAEConfig:
        return cls(n_continuous=n_continuous, categories=categories, hidden=16, n_layers=1, latent_dim=2)


class TabularVAE(nn.Module):
    """Rows (continuous (B, Dc) floats, categorical (B, Dk) class ids) <-> latent codes (B, L)."""

    def __init__(self, config: TabularVAEConfig):
        super().__init__()
        self.config = c = config
        hidden = [c.hidden] * c.n_layers
        self.encoder = MLP(MLPConfig(in_dim=c.in_dim, hidden=hidden, out_dim=2 * c.latent_dim))
        self.decoder = MLP(MLPConfig(in_dim=c.latent_dim, hidden=hidden, out_dim=c.in_dim))
        self.log_sigma = nn.Parameter(torch.zeros(c.n_continuous))  # one noise scale per column

    def _check(self, x_cont: torch.Tensor, x_cat: torch.Tensor) -> None:
        c = self.config
        if x_cont.dim() != 2 or x_cont.shape[1] != c.n_continuous:
            raise ValueError(f"x_cont must be (B, {c.n_continuous}) floats, got {tuple(x_cont.shape)}.")
        if x_cat.dim() != 2 or x_cat.shape[1] != len(c.categories) or x_cat.shape[0] != x_cont.shape[0]:
            raise ValueError(f"x_cat must be (B, {len(c.categories)}) class ids with the rows of x_cont, "
                             f"got {tuple(x_cat.shape)}.")
        if x_cat.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"x_cat must hold integer class ids, got {x_cat.dtype}: use .long().")
        for j, k in enumerate(c.categories):
            if x_cat.numel() and (int(x_cat[:, j].min()) < 0 or int(x_cat[:, j].max()) >= k):
                raise ValueError(f"categorical column {j} must hold ids in [0, {k}).")

    def one_hot_row(self, x_cont: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        """The encoder's input (B, in_dim): continuous values, then each column one-hot."""
        self._check(x_cont, x_cat)
        hots = [F.one_hot(x_cat[:, j].long(), k).to(x_cont.dtype) for j, k in enumerate(self.config.categories)]
        return torch.cat([x_cont, *hots], dim=1)

    def encode(self, x_cont: torch.Tensor, x_cat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mu and logvar (B, L) of q(z|x)."""
        mu, logvar = self.encoder(self.one_hot_row(x_cont, x_cat)).chunk(2, dim=-1)  # (B, 2L) -> 2 x (B, L)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Means (B, Dc) of the continuous columns and a list of logits (B, k_j), one per category."""
        out = self.decoder(z)  # (B, in_dim)
        mean, rest = out[:, : self.config.n_continuous], out[:, self.config.n_continuous:]
        return mean, list(rest.split(list(self.config.categories), dim=1))

    def sigma(self) -> torch.Tensor:
        """The learned standard deviation of each continuous column (Dc,)."""
        return self.log_sigma.clamp(min=self.config.min_log_sigma).exp()

    def forward(self, x_cont: torch.Tensor, x_cat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Negative ELBO of a batch: ``loss`` (rec + beta * KL), ``rec``, ``rec_cont``, ``rec_cat``,
        ``kl`` (nats per row), ``mu`` and ``logvar``."""
        mu, logvar = self.encode(x_cont, x_cat)
        z = reparameterize(mu, logvar)
        mean, logits = self.decode(z)
        log_s = self.log_sigma.clamp(min=self.config.min_log_sigma)  # (Dc,)
        # Gaussian NLL per column: 1/2 ((x - m) / s)^2 + log s + 1/2 log(2 pi)
        nll_cont = 0.5 * ((x_cont - mean) / log_s.exp()).pow(2) + log_s + 0.5 * math.log(2 * math.pi)
        rec_cont = nll_cont.sum(1).mean()
        rec_cat = sum((F.cross_entropy(lg, x_cat[:, j].long(), reduction="mean") for j, lg in enumerate(logits)),
                      start=torch.zeros((), device=x_cont.device))
        kl = gaussian_kl(mu, logvar).sum(1).mean()
        rec = rec_cont + rec_cat
        return {"loss": rec + self.config.beta * kl, "rec": rec, "rec_cont": rec_cont, "rec_cat": rec_cat,
                "kl": kl, "mu": mu, "logvar": logvar}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               noise: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """n new rows from the prior: z ~ N(0, I), then each column from its decoder distribution.

        Returns ``(x_cont (n, Dc), x_cat (n, Dk) long)``. ``noise=False`` keeps the decoder means
        for the continuous columns (smoother, less varied rows).
        """
        if n < 1:
            raise ValueError(f"n must be a positive number of rows, got {n}.")
        was_training = self.training
        self.eval()
        device = self.log_sigma.device
        z = randn((n, self.config.latent_dim), generator, device)
        mean, logits = self.decode(z)
        x_cont = mean + self.sigma() * randn(mean.shape, generator, device) if noise else mean
        cats = [multinomial(lg.softmax(-1), 1, generator) for lg in logits]  # each (n, 1)
        x_cat = torch.cat(cats, dim=1) if cats else torch.zeros(n, 0, dtype=torch.long, device=device)
        self.train(was_training)
        return x_cont, x_cat.long()

    def config_dict(self) -> dict:
        return asdict(self.config)
