"""RLHF with a KL penalty: tune a GPT policy on a reward while staying close to a reference model.

Taught in chapter 3.9 ("From language model to assistant"), used in 5.14. Each step
(Ziegler et al., 2019; Ouyang et al., 2022, eq. 2; PPO's clipped ratio from Schulman et al., 2017):

1. sample ``samples_per_prompt`` replies y ~ pi(. | x) for each prompt x (the policy's own
   sampler, ``GPT.generate`` with its KV cache), cut at the stop token;
2. score them: r(x, y) from ``reward_fn`` (a checker or a learned reward model);
3. penalise drifting: R = r - beta * [log pi(y|x) - log pi_ref(y|x)], a one-sample estimate of
   the KL to the frozen reference (``concepts.feedback.sequence_logprobs``, ``kl_to_reference``);
4. subtract a baseline b (the leave-one-out mean of the other replies to the same prompt, or the
   group mean) and follow the policy gradient: ``concepts.feedback.reinforce_loss`` for a single
   pass, or PPO's clipped per-token ratio over ``inner_epochs`` passes on the same samples.

With the penalty inside R, grad E[R] is the gradient of J(pi) = E[r] - beta KL(pi || pi_ref)
(the extra term -beta E[grad log pi] is zero), so one score-function estimator handles both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from aigc_course.concepts.feedback import kl_to_reference, reinforce_loss, sequence_logprobs

RewardFn = Callable[[torch.Tensor, list], Sequence[float]]
BASELINES = ("loo", "mean", "none")


@dataclass
class RLHFConfig:
    beta: float = 0.1  # weight of the KL penalty; 0 = optimise the reward alone
    lr: float = 1e-4  # Adam learning rate (used when train_rlhf makes the optimizer)
    steps: int = 50  # optimizer rounds in train_rlhf
    prompts_per_step: int = 4  # prompts drawn per step by train_rlhf
    samples_per_prompt: int = 8  # replies sampled per prompt (the batch is their product)
    temperature: float = 1.0  # the policy is the model's distribution at this temperature
    top_k: int | None = None  # None keeps log-probabilities exact (a filtered sampler is not pi)
    max_new_tokens: int = 16
    stop_id: int | None = None  # end-of-reply token: what follows it is neither scored nor trained
    baseline: str = "loo"  # "loo" (leave-one-out), "mean" (group mean) or "none"
    inner_epochs: int = 1  # PPO passes over each batch of samples
    clip: float | None = 0.2  # PPO's epsilon; None = plain REINFORCE (one pass)
    grad_clip: float | None = 1.0  # max global gradient norm
    kl_estimator: str = "k1"  # of the reported KL: "k1" or "k3" (concepts.feedback)

    def __post_init__(self) -> None:
        if self.beta < 0 or self.temperature <= 0 or self.max_new_tokens < 1:
            raise ValueError("RLHFConfig needs beta >= 0, temperature > 0 and max_new_tokens >= 1, "
                             f"got {self.beta}, {self.temperature}, {self.max_new_tokens}.")
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {self.baseline!r}.")
        if self.baseline == "loo" and self.samples_per_prompt < 2:
            raise ValueError("The leave-one-out baseline needs samples_per_prompt >= 2.")
        if self.samples_per_prompt < 1 or self.prompts_per_step < 1 or self.inner_epochs < 1:
            raise ValueError("samples_per_prompt, prompts_per_step and inner_epochs must be >= 1.")
        if self.inner_epochs > 1 and self.clip is None:
            raise ValueError("inner_epochs > 1 re-uses old samples: set clip (PPO) to keep it safe.")


class _Tempered(nn.Module):
    """The model's logits divided by the sampling temperature: the distribution replies come from."""

    def __init__(self, model: nn.Module, temperature: float):
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(idx) / self.temperature


def reply_mask(new_tokens: torch.Tensor, stop_id: int | None) -> torch.Tensor:
    """(B, n) float mask of the generated tokens that belong to the reply: up to and including
    the first ``stop_id`` (stopping is an action the policy takes), nothing after it."""
    if stop_id is None:
        return torch.ones_like(new_tokens, dtype=torch.float)
    stopped_before = (new_tokens == stop_id).long().cumsum(dim=1) - (new_tokens == stop_id).long()
    return (stopped_before == 0).float()


def baseline_of(R: torch.Tensor, kind: str) -> torch.Tensor | None:
    """Baseline of the k rewards R (k,) of one prompt's replies: leave-one-out, mean or none."""
    if kind == "none":
        return None
    if kind == "mean":
        return R.mean().expand_as(R)
    return (R.sum() - R) / (len(R) - 1)  # b_i: mean of the others, independent of reply i


def _check_prompts(policy: nn.Module, prompts: Sequence[torch.Tensor], cfg: RLHFConfig) -> None:
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise ValueError("prompts must be a non-empty list of 1-D LongTensors of token ids.")
    block = policy.config.block_size
    for p in prompts:
        if not torch.is_tensor(p) or p.dim() != 1 or len(p) == 0 or p.dtype != torch.long:
            raise ValueError("Each prompt must be a non-empty 1-D LongTensor of token ids, got "
                             f"{getattr(p, 'shape', type(p))}.")
        if len(p) + cfg.max_new_tokens - 1 > block:
            raise ValueError(f"A prompt of {len(p)} tokens plus max_new_tokens="
                             f"{cfg.max_new_tokens} does not fit block_size {block}: shorten "
                             "the prompt or lower max_new_tokens.")


@dataclass
class Rollout:
    """``k`` replies sampled for one prompt: ids (k, P + n), the reply mask (k, n), the replies
    (cut before the stop token), and log pi / log pi_ref per reply token (k, n), 0 past the stop."""

    idx: torch.Tensor
    prompt_len: int
    mask: torch.Tensor
    replies: list
    logp_tok: torch.Tensor
    logp_ref_tok: torch.Tensor

    @property
    def logp(self) -> torch.Tensor:  # (k,) log pi(y | x)
        return self.logp_tok.sum(1)

    @property
    def logp_ref(self) -> torch.Tensor:  # (k,) log pi_ref(y | x)
        return self.logp_ref_tok.sum(1)


@torch.no_grad()
def rollout(policy: nn.Module, ref: nn.Module, prompt: torch.Tensor, cfg: RLHFConfig,
            generator: torch.Generator | None = None) -> Rollout:
    """Steps 1 and 3 for one prompt: sample ``cfg.samples_per_prompt`` replies with the policy
    and score each reply token under the policy and the reference (at ``cfg.temperature``)."""
    dev = next(policy.parameters()).device
    P, k = len(prompt), cfg.samples_per_prompt
    idx = policy.generate(prompt.to(dev).repeat(k, 1), cfg.max_new_tokens,  # (k, P + n)
                          temperature=cfg.temperature, top_k=cfg.top_k, generator=generator)
    mask = reply_mask(idx[:, P:], cfg.stop_id)  # (k, n)
    replies = [row[: int(m.sum())] for row, m in zip(idx[:, P:].cpu(), mask.cpu())]
    if cfg.stop_id is not None:
        replies = [y[:-1] if len(y) and y[-1] == cfg.stop_id else y for y in replies]
    logp_tok = sequence_logprobs(_Tempered(policy, cfg.temperature), idx, P, per_token=True) * mask
    logp_ref_tok = sequence_logprobs(_Tempered(ref, cfg.temperature), idx, P, per_token=True) * mask
    return Rollout(idx, P, mask, replies, logp_tok, logp_ref_tok)


def policy_kl(policy: nn.Module, ref: nn.Module, prompts: Sequence[torch.Tensor],
              cfg: RLHFConfig | None = None, generator: torch.Generator | None = None) -> float:
    """KL(pi || pi_ref) per reply, estimated on replies the policy samples for ``prompts``."""
    cfg = cfg or RLHFConfig()
    _check_prompts(policy, prompts, cfg)
    outs = [rollout(policy, ref.eval(), p, cfg, generator) for p in prompts]
    logp, logp_ref = torch.cat([o.logp for o in outs]), torch.cat([o.logp_ref for o in outs])
    return float(kl_to_reference(logp, logp_ref, cfg.kl_estimator))


def rlhf_step(policy: nn.Module, ref: nn.Module, reward_fn: RewardFn,
              prompts: Sequence[torch.Tensor], cfg: RLHFConfig, optimizer: torch.optim.Optimizer,
              generator: torch.Generator | None = None) -> dict:
    """One RLHF update of ``policy`` (a ``GPT``) on ``prompts`` (1-D LongTensors of ids).

    ``reward_fn(prompt, replies)`` gets a prompt (P,) and its replies (a list of 1-D LongTensors,
    cut before the stop token) and returns one reward per reply. ``ref`` stays frozen.
    Returns the batch means: ``reward`` (r), ``kl`` (estimate of KL(pi || pi_ref)),
    ``objective`` (r - beta * KL per reply), ``loss``, ``reply_len``, ``clip_frac``.
    """
    if ref is policy:
        raise ValueError("ref must be a frozen copy of the policy (copy.deepcopy(policy)), "
                         "not the policy itself: the KL to itself is always 0.")
    _check_prompts(policy, prompts, cfg)
    pi = _Tempered(policy, cfg.temperature)
    dev = next(policy.parameters()).device
    groups, rewards, logps, logps_ref, lens = [], [], [], [], []
    for prompt in prompts:
        out = rollout(policy, ref.eval(), prompt, cfg, generator)
        k = len(out.idx)
        with torch.no_grad():  # a reward model is a judge, not trained here
            r = torch.as_tensor(reward_fn(prompt, out.replies), dtype=torch.float, device=dev)
        if r.shape != (k,):
            raise ValueError(f"reward_fn must return {k} rewards (one per reply), "
                             f"got shape {tuple(r.shape)}.")
        groups.append((out.idx, out.prompt_len, out.mask, out.logp_tok))
        rewards.append(r)
        logps.append(out.logp)
        logps_ref.append(out.logp_ref)
        lens.append(out.mask.sum(1))
    R = [r - cfg.beta * (lp - lr) for r, lp, lr in zip(rewards, logps, logps_ref)]  # penalised
    advantages = [Rg if (b := baseline_of(Rg, cfg.baseline)) is None else Rg - b for Rg in R]
    n_total = sum(len(Rg) for Rg in R)
    clipped = total = 0.0
    for _ in range(cfg.inner_epochs):
        optimizer.zero_grad(set_to_none=True)
        loss_value = 0.0
        for (idx, P, mask, logp_old), Rg, A in zip(groups, R, advantages):
            logp_tok = sequence_logprobs(pi, idx, P, per_token=True) * mask  # (k, n)
            if cfg.clip is None:
                loss = reinforce_loss(logp_tok.sum(1), Rg, baseline_of(Rg, cfg.baseline))
            else:  # PPO: per-token ratio to the sampling policy, clipped to [1 - eps, 1 + eps]
                ratio = torch.exp(logp_tok - logp_old)  # (k, n); 1 on the first pass
                A_tok = A.unsqueeze(1)  # the sequence's advantage for each of its tokens
                surrogate = torch.minimum(ratio * A_tok,
                                          ratio.clamp(1 - cfg.clip, 1 + cfg.clip) * A_tok)
                loss = -(surrogate * mask).sum(1).mean()  # gradient = REINFORCE's while ratio = 1
                out = ((ratio - 1).abs() > cfg.clip).float() * mask
                clipped, total = clipped + float(out.sum()), total + float(mask.sum())
            (loss * len(Rg) / n_total).backward()
            loss_value += float(loss.detach()) * len(Rg) / n_total
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
        optimizer.step()
    logp, logp_ref = torch.cat(logps), torch.cat(logps_ref)
    return {"reward": float(torch.cat(rewards).mean()),
            "kl": float(kl_to_reference(logp, logp_ref, cfg.kl_estimator)),
            "objective": float(torch.cat(R).mean()), "loss": loss_value,
            "reply_len": float(torch.cat(lens).mean()), "clip_frac": clipped / max(total, 1.0)}


def train_rlhf(policy: nn.Module, ref: nn.Module, reward_fn: RewardFn,
               prompts: Sequence[torch.Tensor], cfg: RLHFConfig | None = None,
               generator: torch.Generator | None = None,
               optimizer: torch.optim.Optimizer | None = None,
               callback: Callable[[int, dict], None] | None = None) -> dict[str, list[float]]:
    """``cfg.steps`` calls of :func:`rlhf_step`, each on ``cfg.prompts_per_step`` prompts drawn
    (without replacement, with ``generator``) from ``prompts``; Adam at ``cfg.lr`` unless an
    ``optimizer`` is given. Returns the history: a list per statistic of ``rlhf_step``."""
    cfg = cfg or RLHFConfig()
    _check_prompts(policy, prompts, cfg)
    for p in ref.parameters():
        p.requires_grad_(False)  # the reference is frozen for good
    optimizer = optimizer or torch.optim.Adam(
        [p for p in policy.parameters() if p.requires_grad], lr=cfg.lr)
    history: dict[str, list[float]] = {}
    n = min(cfg.prompts_per_step, len(prompts))
    for step in range(cfg.steps):
        pick = torch.randperm(len(prompts), generator=generator)[:n].tolist()
        stats = rlhf_step(policy, ref, reward_fn, [prompts[i] for i in pick], cfg, optimizer,
                          generator)
        for key, value in stats.items():
            history.setdefault(key, []).append(value)
        if callback is not None:
            callback(step, stats)
    return history


@torch.no_grad()
def sampled_kl(policy: nn.Module, ref: nn.Module, tok, instructions: list[str], samples: int = 4,
               max_new_tokens: int = 48, generator: torch.Generator | None = None) -> float:
    """KL(policy || ref) on the replies to ``instructions``: the mean over replies y ~ policy
    (temperature 1, up to and including the end token) of log policy(y|x) - log ref(y|x)."""
    from aigc_course.assistant.chat import format_prompt

    logp, logp_ref = [], []
    for x in instructions:
        prompt = torch.tensor(tok.encode(format_prompt(x)))
        P = len(prompt)
        n = min(max_new_tokens, policy.config.block_size - P)
        idx = policy.generate(prompt.repeat(samples, 1), n, temperature=1.0, generator=generator)
        mask = reply_mask(idx[:, P:], tok.end_id)  # (samples, n): the reply and its end token
        logp.append((sequence_logprobs(policy, idx, P, per_token=True) * mask).sum(1))
        logp_ref.append((sequence_logprobs(ref, idx, P, per_token=True) * mask).sum(1))
    return float(kl_to_reference(torch.cat(logp), torch.cat(logp_ref)))


def win_rate(scores: list[float], other: list[float]) -> float:
    """Share of examples where ``scores`` beat ``other``, ties counted as half a win."""
    return sum((a > b) + 0.5 * (a == b) for a, b in zip(scores, other)) / len(scores)


__all__ = ["RLHFConfig", "Rollout", "baseline_of", "policy_kl", "reply_mask", "rlhf_step", "sampled_kl", "win_rate",
           "rollout", "train_rlhf"]
