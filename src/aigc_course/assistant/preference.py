"""Learning from preferences: a GPT reward model, DPO, and the closed form both rest on.

Taught in chapter 4.6 ("The mathematics of alignment"), used in 3.9 and 5.14. The pieces:

1. The KL-regularised objective J(pi) = E_pi[r] - beta KL(pi || pi_ref) is maximised by
   pi*(y) = pi_ref(y) exp(r(y) / beta) / Z (:func:`optimal_policy`; Ouyang et al., 2022, eq. 2).
2. Preferences follow Bradley-Terry, P(y_c > y_r) = sigmoid(r(y_c) - r(y_r)) (Bradley & Terry,
   1952); a reward model is its maximum-likelihood fit (:class:`GPTRewardModel`, trained with
   ``concepts.feedback.bradley_terry_loss``; Christiano et al., 2017).
3. Solving step 1 for r gives r = beta log(pi* / pi_ref) + beta log Z; in Bradley-Terry Z cancels,
   which leaves DPO's loss -log sigmoid(beta [(log pi_c - log ref_c) - (log pi_r - log ref_r)])
   (:func:`dpo_loss`; Rafailov et al., 2023, eq. 7).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aigc_course.concepts.feedback import bradley_terry_loss
from aigc_course.models.gpt import GPT, GPTConfig


def response_logprobs(model: nn.Module, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log pi(response | prompt): the sum of log pi(targets[t] | ids[:t+1]) where targets != -100.

    ``ids`` and ``targets`` (B, T) are laid out as for ``GPT.forward(ids, targets)`` (targets are
    the next tokens; prompt and padding positions hold -100, as ``assistant.chat.encode_sft``
    makes them). Returns (B,), with gradients into the model. With targets = ids shifted by one
    and the prompt masked, this equals ``concepts.feedback.sequence_logprobs``.
    """
    if not (torch.is_tensor(ids) and torch.is_tensor(targets)) or ids.dim() != 2 \
            or ids.shape != targets.shape:
        raise ValueError("ids and targets must be tensors of the same shape (B, T), got "
                         f"{getattr(ids, 'shape', type(ids))} and "
                         f"{getattr(targets, 'shape', type(targets))}.")
    scored = targets != -100  # (B, T)
    if not scored.any(dim=1).all():
        raise ValueError("Some rows of targets have no scored token (all -100): "
                         "an empty response has no log-probability to compare.")
    logits = model(ids)
    logits = getattr(logits, "logits", logits)  # a Hugging Face model returns an output object
    logits = logits[0] if isinstance(logits, tuple) else logits  # (B, T, V)
    logp = F.log_softmax(logits.float(), dim=-1)
    logp_tok = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
    return (logp_tok * scored).sum(dim=1)


def dpo_loss(pi_chosen: torch.Tensor, pi_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict]:
    """DPO's loss (Rafailov et al., 2023, eq. 7) from sequence log-probabilities, each (B,).

    The implicit reward of a response is r_hat = beta (log pi - log pi_ref); the loss is the
    Bradley-Terry negative log-likelihood of the chosen response beating the rejected one under
    r_hat, mean(-log sigmoid(r_hat_c - r_hat_r)). It equals log 2 when pi = pi_ref.

    Returns (loss, stats) with stats the mean implicit rewards ``reward_chosen`` and
    ``reward_rejected``, their ``margin``, and ``accuracy`` (share of pairs with r_hat_c > r_hat_r).
    """
    if not beta > 0:
        raise ValueError(f"beta must be positive (the KL weight), got {beta!r}.")
    tensors = (pi_chosen, pi_rejected, ref_chosen, ref_rejected)
    if not all(torch.is_tensor(t) and t.dim() == 1 and t.shape == pi_chosen.shape
               for t in tensors) or pi_chosen.numel() == 0:
        raise ValueError("dpo_loss needs four non-empty 1-D tensors of the same shape (B,), got "
                         f"{[tuple(getattr(t, 'shape', ())) for t in tensors]}.")
    reward_chosen = beta * (pi_chosen - ref_chosen.detach())  # implicit rewards, up to beta log Z
    reward_rejected = beta * (pi_rejected - ref_rejected.detach())
    loss = bradley_terry_loss(reward_chosen, reward_rejected)  # -mean log sigmoid(r_c - r_r)
    with torch.no_grad():
        margin = reward_chosen - reward_rejected
        stats = {"reward_chosen": reward_chosen.mean().item(),
                 "reward_rejected": reward_rejected.mean().item(),
                 "margin": margin.mean().item(),
                 "accuracy": (margin > 0).float().mean().item()}
    return loss, stats


def optimal_policy(ref_probs: torch.Tensor, rewards: torch.Tensor, beta: float) -> torch.Tensor:
    """pi*(y) = pi_ref(y) exp(r(y) / beta) / Z over the last dimension (K answers).

    The maximiser of E_pi[r] - beta KL(pi || pi_ref) over distributions pi; computed as
    softmax(log pi_ref + r / beta), so Z never overflows. beta -> 0 gives argmax r,
    beta -> infinity gives pi_ref.
    """
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta!r}.")
    ref_probs, rewards = torch.as_tensor(ref_probs), torch.as_tensor(rewards)
    if ref_probs.shape != rewards.shape:
        raise ValueError(f"ref_probs {tuple(ref_probs.shape)} and rewards "
                         f"{tuple(rewards.shape)} must have the same shape (..., K).")
    if (ref_probs < 0).any() or not torch.allclose(
            ref_probs.sum(-1), torch.ones((), dtype=ref_probs.dtype), atol=1e-5):
        raise ValueError("ref_probs must be probabilities that sum to 1 over the last dimension.")
    return torch.softmax(ref_probs.log() + rewards / beta, dim=-1)


def kl_regularised_objective(probs: torch.Tensor, ref_probs: torch.Tensor, rewards: torch.Tensor,
                             beta: float) -> torch.Tensor:
    """J(pi) = sum_y pi(y) r(y) - beta sum_y pi(y) log(pi(y) / pi_ref(y)), over the last dim."""
    kl = torch.xlogy(probs, probs) - probs * ref_probs.log()  # 0 log 0 = 0
    return (probs * rewards).sum(-1) - beta * kl.sum(-1)


def sample_bt_comparisons(rewards: torch.Tensor, n: int, generator: torch.Generator | None = None,
                          ref_probs: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """n simulated comparisons of K answers with true ``rewards`` (K,) under Bradley-Terry.

    Both answers of a pair are drawn from ``ref_probs`` (uniform if None), redrawn until they
    differ; the first wins with probability sigmoid(r_a - r_b). Returns (chosen, rejected)
    index tensors (n,).
    """
    rewards = torch.as_tensor(rewards, dtype=torch.float64)
    K = rewards.numel()
    if rewards.dim() != 1 or K < 2 or n < 1:
        raise ValueError(f"rewards must be 1-D with K >= 2 answers and n >= 1, got shape "
                         f"{tuple(rewards.shape)} and n={n}.")
    p = torch.full((K,), 1.0 / K, dtype=torch.float64) if ref_probs is None \
        else torch.as_tensor(ref_probs, dtype=torch.float64)
    a = torch.multinomial(p, n, replacement=True, generator=generator)
    # b from p restricted to answers != a: a draw of the renormalised distribution per row
    p_b = p.expand(n, K).clone()
    p_b[torch.arange(n), a] = 0.0
    b = torch.multinomial(p_b, 1, generator=generator).squeeze(1)
    a_wins = torch.rand(n, generator=generator, dtype=torch.float64) \
        < torch.sigmoid(rewards[a] - rewards[b])
    return torch.where(a_wins, a, b), torch.where(a_wins, b, a)


class GPTRewardModel(nn.Module):
    """A GPT trunk with a scalar head read at the last real token: (B, T) ids -> (B,) scores.

    The trunk is the course's ``GPT`` with its output head replaced by the identity, so its
    forward returns the final hidden states (B, T, C); the head is a ``Linear(C, 1)``. As in
    Ouyang et al. (2022) it is best started from the supervised model (:meth:`from_gpt`).
    """

    def __init__(self, gpt_config: GPTConfig):
        super().__init__()
        if not gpt_config.causal:
            raise ValueError("GPTRewardModel needs a causal GPTConfig (the score is read at the "
                             "last token, which must not see padding after it).")
        self.config = gpt_config
        self.trunk = GPT(gpt_config)
        self.trunk.lm_head = nn.Identity()  # forward now returns hidden states (B, T, C)
        self.head = nn.Linear(gpt_config.n_embd, 1)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_gpt(cls, gpt: GPT) -> GPTRewardModel:
        """A reward model whose trunk starts as a copy of ``gpt``'s weights (head new)."""
        model = cls(gpt.config)
        state = {k: v for k, v in gpt.state_dict().items() if not k.startswith("lm_head.")}
        model.trunk.load_state_dict(state)
        return model.to(next(gpt.parameters()).device)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Scores (B,) of right-padded ids (B, T) whose rows have ``lengths`` real tokens
        (None: every row is T long)."""
        if not torch.is_tensor(idx) or idx.dim() != 2:
            raise ValueError(f"idx must be token ids (B, T), got {getattr(idx, 'shape', idx)}.")
        B, T = idx.shape
        if lengths is None:
            lengths = torch.full((B,), T, device=idx.device)
        lengths = torch.as_tensor(lengths, device=idx.device)
        if lengths.shape != (B,) or (lengths < 1).any() or (lengths > T).any():
            raise ValueError(f"lengths must be (B,) = ({B},) with 1 <= length <= T = {T}.")
        h = self.trunk(idx)
        h = h[0] if isinstance(h, tuple) else h  # (B, T, C)
        h_last = h[torch.arange(B, device=idx.device), lengths.long() - 1]  # (B, C)
        return self.head(h_last).squeeze(-1)  # (B,)


def reward_model_loss(model: nn.Module, batch) -> dict:
    """``fit`` loss for a reward model on a batch (ids_c, len_c, ids_r, len_r): the
    Bradley-Terry negative log-likelihood, with the pair accuracy as a second entry."""
    ids_c, len_c, ids_r, len_r = batch
    r_c, r_r = model(ids_c, len_c), model(ids_r, len_r)
    return {"loss": bradley_terry_loss(r_c, r_r), "acc": (r_c > r_r).float().mean().detach()}


def dpo_loss_fn(ref: nn.Module, beta: float, nll_weight: float = 0.0) -> Callable:
    """A ``fit`` loss ``(policy, batch) -> dict`` for DPO against the frozen model ``ref``;
    batch = (ids_c, targets_c, ids_r, targets_r) as ``encode_sft`` lays them out.

    ``nll_weight`` > 0 adds that multiple of the chosen replies' negative log-likelihood per
    token (the SFT loss on the chosen replies; DPO+NLL of Pang et al., 2024, TRL's
    ``loss_type=["sigmoid", "sft"]``): it keeps the chosen replies likely, where plain DPO may
    lower both replies' probabilities as long as their difference grows."""
    if nll_weight < 0:
        raise ValueError(f"nll_weight must be >= 0, got {nll_weight!r}.")
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)

    def loss_fn(policy: nn.Module, batch) -> dict:
        ids_c, tgt_c, ids_r, tgt_r = batch
        with torch.no_grad():
            ref_c, ref_r = response_logprobs(ref, ids_c, tgt_c), response_logprobs(ref, ids_r, tgt_r)
        pi_c, pi_r = response_logprobs(policy, ids_c, tgt_c), response_logprobs(policy, ids_r, tgt_r)
        loss, stats = dpo_loss(pi_c, pi_r, ref_c, ref_r, beta)
        if nll_weight:
            nll = -pi_c.sum() / (tgt_c != -100).sum()  # mean over the chosen replies' tokens
            loss, stats = loss + nll_weight * nll, {**stats, "nll": nll.item()}
        return {"loss": loss, **{k: torch.tensor(v) for k, v in stats.items()}}

    return loss_fn


@dataclass
class PreferencePair:
    """One comparison: a prompt, the preferred and the other reply, and their checker scores."""

    example: object  # an assistant.tasks.Example
    chosen: str
    rejected: str
    score_chosen: float
    score_rejected: float


def make_preference_pairs(examples: Sequence, replies_a: Sequence[str], replies_b: Sequence[str],
                          check: Callable | None = None, min_margin: float = 1e-9
                          ) -> list[PreferencePair]:
    """Pairs from two replies per example, ranked by a checker (``assistant.tasks.check`` by
    default): the reply with the higher score is chosen; pairs whose scores differ by less than
    ``min_margin`` (ties) are dropped, as annotators' ties are in Ouyang et al. (2022)."""
    if not len(examples) == len(replies_a) == len(replies_b):
        raise ValueError(f"examples, replies_a and replies_b must have the same length, got "
                         f"{len(examples)}, {len(replies_a)}, {len(replies_b)}.")
    if check is None:
        from aigc_course.assistant.tasks import check  # the stated criteria of every task
    pairs = []
    for ex, a, b in zip(examples, replies_a, replies_b):
        s_a, s_b = float(check(ex, a)), float(check(ex, b))
        if abs(s_a - s_b) < min_margin:
            continue
        pairs.append(PreferencePair(ex, a, b, s_a, s_b) if s_a > s_b
                     else PreferencePair(ex, b, a, s_b, s_a))
    return pairs


def encode_pairs(tok, pairs: Sequence[PreferencePair], block_size: int):
    """Token tensors of preference pairs for DPO: (ids_c, targets_c, ids_r, targets_r), each
    (N, T), laid out by ``assistant.chat.encode_sft`` (response tokens scored, the rest -100)."""
    from aigc_course.assistant.chat import encode_sft

    if not pairs:
        raise ValueError("No preference pairs to encode (all ties?).")
    chosen = [(p.example.instruction, p.chosen) for p in pairs]
    rejected = [(p.example.instruction, p.rejected) for p in pairs]
    ids_c, tgt_c = encode_sft(tok, chosen, block_size)
    ids_r, tgt_r = encode_sft(tok, rejected, block_size)
    return ids_c, tgt_c, ids_r, tgt_r


def reward_lengths(targets: torch.Tensor) -> torch.Tensor:
    """Real-token counts (N,) of ``encode_sft`` rows: one past the last scored position, i.e. the
    position where the final response token sits as an input (what :class:`GPTRewardModel` reads)."""
    scored = targets != -100  # (N, T)
    if not scored.any(dim=1).all():
        raise ValueError("A row has no scored token; its reward position is undefined.")
    T = targets.shape[1]
    last = T - 1 - scored.flip(1).float().argmax(dim=1)  # (N,) last scored position
    return (last + 1).clamp(max=T)


__all__ = ["GPTRewardModel", "PreferencePair", "dpo_loss", "dpo_loss_fn", "encode_pairs",
           "kl_regularised_objective", "make_preference_pairs", "optimal_policy",
           "response_logprobs", "reward_lengths", "reward_model_loss", "sample_bt_comparisons"]
