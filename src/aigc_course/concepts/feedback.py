"""Learning from feedback: policy gradients, KL to a reference model, preference rewards.

Taught in part 2, "2.5 Transfer learning and learning from feedback", where each formula is
first written inline in a few lines and then replaced by these functions.

The RLHF objective (Ziegler et al., 2019, "Fine-Tuning Language Models from Human
Preferences"; Ouyang et al., 2022, "Training language models to follow instructions with human
feedback", eq. 2) for a policy pi (the language model being tuned) and a frozen reference
pi_ref (the supervised / pretrained model) is

    J(pi) = E_{x ~ pi}[ r(x) ] - beta * KL(pi || pi_ref).

The pieces:

1. :func:`sequence_logprobs`: log pi(x) = sum_t log pi(x_t | x_<t) over the generated tokens.
2. :func:`kl_to_reference`: a Monte Carlo estimate of KL(pi || pi_ref) from samples x ~ pi.
3. :func:`reinforce_loss`: the score-function (REINFORCE) surrogate whose gradient is an
   unbiased estimate of -grad E[R] (Williams, 1992), with a baseline to reduce its variance.
4. :func:`bradley_terry_loss` and :class:`RewardModel`: a reward learned from pairwise
   preferences, P(a preferred to b) = sigmoid(r(a) - r(b)) (Bradley & Terry, 1952; used for
   reward models by Christiano et al., 2017 and Ouyang et al., 2022).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def _check_1d_pair(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> None:
    if not (torch.is_tensor(a) and torch.is_tensor(b)):
        raise ValueError(f"{names[0]} and {names[1]} must be tensors.")
    if a.dim() != 1 or a.shape != b.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must be 1-D tensors of the same shape (B,), "
            f"got {tuple(a.shape)} and {tuple(b.shape)}."
        )
    if a.numel() == 0:
        raise ValueError(f"{names[0]} is empty.")


def sequence_logprobs(
    model: nn.Module, idx: torch.Tensor, prompt_len: int, per_token: bool = False
) -> torch.Tensor:
    """log pi(x_{prompt_len:} | x_{:prompt_len}) for each sequence of ``idx``.

    Args:
        model: a causal language model mapping ids (B, T) to logits (B, T, V), like ``GPT``.
        idx: token ids (B, T): a prompt of ``prompt_len`` tokens followed by generated tokens.
        prompt_len: number of prompt tokens, 1 <= prompt_len < T; they are conditioned on,
            not scored.
        per_token: return the log-probability of each generated token (B, T - prompt_len)
            instead of their sum (B,).

    The logits at position t predict token t + 1, so the generated tokens idx[:, prompt_len:]
    are scored by the logits at positions prompt_len - 1 ... T - 2. Gradients flow into the model.
    """
    if not torch.is_tensor(idx) or idx.dim() != 2:
        raise ValueError(
            f"idx must be token ids of shape (B, T), got {getattr(idx, 'shape', type(idx))}."
        )
    T = idx.shape[1]
    if not 1 <= prompt_len < T:
        raise ValueError(f"prompt_len must satisfy 1 <= prompt_len < T = {T}, got {prompt_len}.")
    logits = model(idx[:, :-1])  # (B, T-1, V): position t predicts token t+1
    logp_all = F.log_softmax(logits.float(), dim=-1)
    targets = idx[:, 1:]  # (B, T-1)
    logp_tok = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T-1)
    logp_tok = logp_tok[:, prompt_len - 1 :]  # (B, T - prompt_len): the generated tokens only
    return logp_tok if per_token else logp_tok.sum(dim=1)


def kl_to_reference(
    logp: torch.Tensor, logp_ref: torch.Tensor, estimator: str = "k1"
) -> torch.Tensor:
    """Monte Carlo estimate of KL(pi || pi_ref) from samples x ~ pi.

    Args:
        logp: log pi(x) of B samples drawn from pi, shape (B,).
        logp_ref: log pi_ref(x) of the same samples, shape (B,).
        estimator: ``"k1"``: mean of log pi(x) - log pi_ref(x), unbiased, can be negative for a
            single sample; ``"k3"``: mean of (rho - 1) - log rho with rho = pi_ref(x) / pi(x),
            also unbiased (E_pi[rho] = 1) and never negative, usually of lower variance.

    Returns the scalar estimate, KL = E_{x~pi}[log pi(x) - log pi_ref(x)].
    """
    _check_1d_pair(logp, logp_ref, ("logp", "logp_ref"))
    log_ratio = logp - logp_ref  # log pi(x) / pi_ref(x)
    if estimator == "k1":
        return log_ratio.mean()
    if estimator == "k3":
        # (rho - 1) - log rho with log rho = -log_ratio; expm1 keeps precision near rho = 1
        return (torch.expm1(-log_ratio) + log_ratio).mean()
    raise ValueError(f"estimator must be 'k1' or 'k3', got {estimator!r}.")


def reinforce_loss(
    logp: torch.Tensor, rewards: torch.Tensor, baseline: float | torch.Tensor | None = None
) -> torch.Tensor:
    """The REINFORCE surrogate loss -mean((R - b) * log pi(x)) (Williams, 1992).

    Args:
        logp: log pi(x) of B samples x ~ pi, shape (B,), carrying gradients.
        rewards: their returns R(x), shape (B,); treated as constants (detached).
        baseline: b, a scalar or a (B,) tensor that does not depend on the sampled x_i itself
            (e.g. a running mean of past rewards); None means 0.

    grad of this loss = -mean((R - b) grad log pi(x)), an unbiased estimate of -grad E_pi[R],
    because E_pi[grad log pi(x)] = 0 lets any constant baseline be subtracted for free.
    """
    _check_1d_pair(logp, rewards, ("logp", "rewards"))
    advantage = rewards.detach().float()
    if baseline is not None:
        baseline = torch.as_tensor(
            baseline, dtype=advantage.dtype, device=advantage.device
        ).detach()
        if baseline.dim() > 1 or (baseline.dim() == 1 and baseline.shape != advantage.shape):
            raise ValueError(
                f"baseline must be a scalar or shape {tuple(advantage.shape)}, "
                f"got {tuple(baseline.shape)}."
            )
        advantage = advantage - baseline
    return -(advantage * logp).mean()


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of pairwise preferences under the Bradley-Terry model.

    P(chosen preferred to rejected) = sigmoid(r_chosen - r_rejected), so the loss is
    mean(-log sigmoid(r_chosen - r_rejected)) (Bradley & Terry, 1952; Ouyang et al., 2022, eq. 1).
    Both arguments have shape (B,).
    """
    _check_1d_pair(r_chosen, r_rejected, ("r_chosen", "r_rejected"))
    return -F.logsigmoid(r_chosen - r_rejected).mean()  # logsigmoid is stable for large |diff|


@dataclass
class RewardConfig:
    vocab_size: int = 65
    n_embd: int = 32
    hidden: int = 64


class RewardModel(nn.Module):
    """A tiny reward model: token ids (B, T) -> one scalar score per sequence (B,).

    It embeds each token, averages the embeddings over the sequence (a "bag of characters") and
    maps the average to a score with a small MLP. Real reward models put a scalar head on a
    pretrained transformer instead; this one is enough for rules that depend on character
    statistics, and trains in seconds on a CPU with :func:`bradley_terry_loss`.
    """

    def __init__(self, config: RewardConfig | None = None):
        super().__init__()
        config = config or RewardConfig()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, config.hidden), nn.GELU(), nn.Linear(config.hidden, 1)
        )

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(idx) or idx.dim() != 2:
            raise ValueError(
                "RewardModel expects token ids of shape (B, T), "
                f"got {getattr(idx, 'shape', type(idx))}."
            )
        h = self.tok_emb(idx).mean(dim=1)  # (B, T, C) -> (B, C)
        return self.mlp(h).squeeze(-1)  # (B,)


__all__ = [
    "RewardConfig",
    "RewardModel",
    "bradley_terry_loss",
    "kl_to_reference",
    "reinforce_loss",
    "sequence_logprobs",
]
