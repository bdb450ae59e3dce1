"""Decoding strategies of a language model: greedy, sampling with filters, beam search.

Taught in chapter 3.3, "Transformer text generation and decoding strategies". Everything here is
model-agnostic: a language model is seen only through a function

    next_logits(ids: LongTensor (B, T)) -> FloatTensor (B, V)

that returns the scores of the next token after each of B prefixes. :func:`gpt_next_logits` makes
one from :class:`aigc_course.models.GPT` (cropping the context to its ``block_size``).

A sampling step transforms the logits in a fixed order (the order of Hugging Face transformers):

1. repetition penalty (Keskar et al., 2019, CTRL, section 4.1): a token already in the context has
   its logit divided by ``penalty`` if positive and multiplied by it if negative;
2. temperature: z / tau (tau -> 0 is greedy decoding);
3. top-k: keep the k largest logits (Fan et al., 2018);
4. top-p: keep the smallest set of likeliest tokens whose probability reaches p (nucleus
   sampling, Holtzman et al., 2020);
5. softmax and one draw.

Beam search keeps the ``beam_size`` prefixes with the highest summed log-probability
(Graves, 2012; Sutskever et al., 2014); the final ranking divides by length**alpha
(``length_penalty``), which matters only when hypotheses end at an end-of-sequence token.

Two measurable properties of generated text: :func:`distinct_n` (Li et al., 2016), the share of
n-grams that are unique, and :func:`repetition_rate`, the share of n-grams that repeat one seen
earlier in the same text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from aigc_course.runtime import multinomial

NextLogits = Callable[[torch.Tensor], torch.Tensor]
STRATEGIES = ("greedy", "sample", "beam")


# ---------------------------------------------------------------- argument checks
def _check_temperature(temperature: float) -> None:
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}.")


def _check_top_k(k: int | None) -> None:
    if k is not None and (int(k) != k or k < 1):
        raise ValueError(f"top_k must be a positive integer or None (no filter), got {k}.")


def _check_top_p(p: float | None) -> None:
    if p is not None and not 0 < p <= 1:
        raise ValueError(f"top_p must lie in (0, 1] (1 = no filter) or be None, got {p}.")


def _check_penalty(penalty: float) -> None:
    if penalty <= 0:
        raise ValueError(f"repetition_penalty must be > 0 (1 = off, > 1 discourages repeats), got {penalty}.")


def _check_prompt(prompt: torch.Tensor, n: int) -> torch.Tensor:
    """Return the prompt as (B, T) long ids; a 1-D prompt becomes a batch of one."""
    if not torch.is_tensor(prompt) or prompt.dim() not in (1, 2) or prompt.shape[-1] == 0:
        shape = tuple(prompt.shape) if torch.is_tensor(prompt) else type(prompt).__name__
        raise ValueError(f"prompt must be token ids of shape (T,) or (B, T) with T >= 1, got {shape}.")
    if n < 0:
        raise ValueError(f"The number of new tokens n must be >= 0, got {n}.")
    return prompt[None] if prompt.dim() == 1 else prompt


def _check_logits(logits: torch.Tensor) -> None:
    if not torch.is_tensor(logits) or logits.dim() != 2:
        shape = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
        raise ValueError(f"next_logits must return logits of shape (B, V), got {shape}.")


@dataclass
class DecodeConfig:
    """All knobs of :func:`decode`. ``strategy`` is "greedy", "sample" or "beam"."""

    strategy: str = "sample"
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0
    beam_size: int = 4
    length_penalty: float = 1.0

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}.")
        _check_temperature(self.temperature)
        _check_top_k(self.top_k)
        _check_top_p(self.top_p)
        _check_penalty(self.repetition_penalty)
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {self.beam_size}.")


# ---------------------------------------------------------------- the model adapter
def gpt_next_logits(model: torch.nn.Module) -> NextLogits:
    """``ids (B, T) -> logits (B, V)`` of the next token for a GPT, fed its last block_size tokens.

    Put the model in eval mode first (``load_pretrained`` does); this adapter changes no state.
    """
    block_size = model.config.block_size

    @torch.no_grad()
    def next_logits(ids: torch.Tensor) -> torch.Tensor:
        return model(ids[:, -block_size:])[:, -1, :].float()  # (B, V)

    return next_logits


# ---------------------------------------------------------------- logit transforms
def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the top-p nucleus (last dim)."""
    if top_k is not None:
        k = min(top_k, logits.size(-1))
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = F.softmax(sorted_logits, dim=-1).cumsum(-1)
        # drop a token when the tokens before it already reach top_p (the first is always kept)
        drop_sorted = (cum - F.softmax(sorted_logits, dim=-1)) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """z / tau. At tau = 0 (the limit tau -> 0) only the argmax keeps a finite logit."""
    _check_temperature(temperature)
    if temperature == 0:
        top = logits.argmax(-1, keepdim=True)
        return torch.full_like(logits, float("-inf")).scatter(-1, top, 0.0)
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int | None) -> torch.Tensor:
    """Set every logit outside the k largest to -inf (ties with the k-th are kept)."""
    _check_top_k(k)
    return filter_logits(logits, top_k=k)


def top_p_filter(logits: torch.Tensor, p: float | None) -> torch.Tensor:
    """Keep the smallest set of likeliest tokens whose total probability reaches p."""
    _check_top_p(p)
    return filter_logits(logits, top_p=p)


def repetition_penalty(logits: torch.Tensor, ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty: for each token in ``ids`` (B, T), z -> z / penalty if z > 0 else z * penalty.

    Either way the token becomes less likely when penalty > 1, whatever the sign of its logit.
    """
    _check_penalty(penalty)
    _check_logits(logits)
    if ids.dim() != 2 or ids.shape[0] != logits.shape[0]:
        raise ValueError(f"ids must be (B, T) with B = {logits.shape[0]}, got {tuple(ids.shape)}.")
    if penalty == 1.0 or ids.numel() == 0:
        return logits
    seen = logits.gather(-1, ids)  # (B, T): the logits of the tokens already in the context
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits.scatter(-1, ids, seen)


_repetition_penalty = repetition_penalty  # sample() has a parameter of the same name


def process_logits(logits: torch.Tensor, ids: torch.Tensor, temperature: float = 1.0,
                   top_k: int | None = None, top_p: float | None = None,
                   repetition_penalty: float = 1.0) -> torch.Tensor:
    """Steps 1-4 of the module docstring: penalty, temperature, top-k, top-p (logits in, logits out)."""
    logits = _repetition_penalty(logits, ids, repetition_penalty)
    logits = apply_temperature(logits, temperature)
    return top_p_filter(top_k_filter(logits, top_k), top_p)


# ---------------------------------------------------------------- decoding loops
@torch.no_grad()
def greedy(next_logits: NextLogits, prompt: torch.Tensor, n: int) -> torch.Tensor:
    """Append the single likeliest token n times: (B, T) -> (B, T + n)."""
    ids = _check_prompt(prompt, n)
    for _ in range(n):
        logits = next_logits(ids)
        _check_logits(logits)
        ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids


@torch.no_grad()
def sample(next_logits: NextLogits, prompt: torch.Tensor, n: int, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, repetition_penalty: float = 1.0,
           generator: torch.Generator | None = None,
           logits_hook: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Draw n tokens one at a time from the processed distribution: (B, T) -> (B, T + n).

    A seeded ``generator`` makes the draws repeat exactly; it may live on the CPU or on the
    logits' device (the draw happens on the generator's, :func:`aigc_course.runtime.multinomial`).
    ``logits_hook(logits (B, V), ids (B, T)) -> logits (B, V)``, if given, changes the model's raw
    logits before steps 1-5 (the green-list watermark of chapter 6.7 adds its bias there).
    """
    for check, value in ((_check_temperature, temperature), (_check_top_k, top_k),
                         (_check_top_p, top_p), (_check_penalty, repetition_penalty)):
        check(value)
    ids = _check_prompt(prompt, n)
    for _ in range(n):
        logits = next_logits(ids)
        _check_logits(logits)
        if logits_hook is not None:
            logits = logits_hook(logits.float(), ids)
        logits = process_logits(logits.float(), ids, temperature, top_k, top_p, repetition_penalty)
        nxt = multinomial(F.softmax(logits, dim=-1), 1, generator)  # (B, 1)
        ids = torch.cat([ids, nxt], dim=1)
    return ids


@torch.no_grad()
def beam_search(next_logits: NextLogits, prompt: torch.Tensor, n: int, beam_size: int = 4,
                length_penalty: float = 1.0, eos_id: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Beam search from one prompt (T,) or (1, T) for n steps.

    Returns ``(sequences (K, T + n), logprobs (K,))`` with K = beam_size (fewer if the vocabulary
    is smaller), best first: ``logprobs`` is the summed log-probability of the new tokens. A beam
    that emits ``eos_id`` is finished: it keeps its score and is padded with ``eos_id``. Beams are
    pruned by summed log-probability and finally ranked by logprob / length**length_penalty,
    where length counts the new tokens up to and including the first eos.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}.")
    ids = _check_prompt(prompt, n)
    if ids.shape[0] != 1:
        raise ValueError(f"beam_search decodes one prompt at a time, got a batch of {ids.shape[0]}.")
    scores = torch.zeros(1, device=ids.device)  # (K,): summed log-probabilities of the beams
    done = torch.zeros(1, dtype=torch.bool, device=ids.device)
    lengths = torch.zeros(1, device=ids.device)
    for _ in range(n):
        logits = next_logits(ids)
        _check_logits(logits)
        logp = F.log_softmax(logits.float(), dim=-1)  # (K, V)
        V = logp.shape[-1]
        if eos_id is not None:  # a finished beam can only be extended by eos, at no cost
            logp[done] = float("-inf")
            logp[done, eos_id] = 0.0
        # 1. score every one-token extension of every beam: (K, V) -> (K * V,)
        cand = (scores[:, None] + logp).view(-1)
        # 2. keep the beam_size best extensions
        top = cand.topk(min(beam_size, cand.numel()))
        src, tok = top.indices // V, top.indices % V  # which beam, which token
        # 3. re-assemble the beams
        ids = torch.cat([ids[src], tok[:, None]], dim=1)
        lengths = lengths[src] + (~done[src]).float()
        scores, done = top.values, done[src] | (tok == eos_id if eos_id is not None else False)
    normalised = scores / lengths.clamp_min(1) ** length_penalty
    order = normalised.argsort(descending=True, stable=True)
    return ids[order], scores[order]


def decode(next_logits: NextLogits, prompt: torch.Tensor, n: int, cfg: DecodeConfig,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Run the strategy of ``cfg``; beam search returns only its best sequence, (1, T + n)."""
    if cfg.strategy == "greedy":
        return greedy(next_logits, prompt, n)
    if cfg.strategy == "beam":
        return beam_search(next_logits, prompt, n, cfg.beam_size, cfg.length_penalty)[0][:1]
    return sample(next_logits, prompt, n, cfg.temperature, cfg.top_k, cfg.top_p,
                  cfg.repetition_penalty, generator)


@torch.no_grad()
def continuation_logprob(next_logits: NextLogits, ids: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """log p(ids[:, prompt_len:] | prompt) under the raw model (temperature 1, no filter): (B,)."""
    if ids.dim() != 2 or not 1 <= prompt_len <= ids.shape[1]:
        raise ValueError(f"Need ids (B, T) and 1 <= prompt_len <= T, got {tuple(ids.shape)}, {prompt_len}.")
    total = torch.zeros(ids.shape[0], device=ids.device)
    for t in range(prompt_len, ids.shape[1]):
        logp = F.log_softmax(next_logits(ids[:, :t]).float(), dim=-1)  # (B, V)
        total += logp.gather(-1, ids[:, t : t + 1]).squeeze(-1)
    return total


# ---------------------------------------------------------------- properties of the output
def _ngrams(tokens: Sequence, n: int) -> list[tuple]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(texts: Sequence[Sequence], n: int) -> float:
    """Unique n-grams / all n-grams, pooled over ``texts`` (Li et al., 2016); 0 if there are none.

    A text is any sequence of tokens: a str counts characters, ``text.split()`` counts words.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    if isinstance(texts, str):
        raise ValueError("distinct_n expects a list of texts; wrap a single text as [text].")
    grams = [g for t in texts for g in _ngrams(t, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(texts: Sequence[Sequence], n: int = 4) -> float:
    """Share of n-grams that already occurred earlier in the same text, averaged over ``texts``.

    0 for text that never repeats itself; close to 1 for a decoder stuck in a loop.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    if isinstance(texts, str):
        raise ValueError("repetition_rate expects a list of texts; wrap a single text as [text].")
    rates = []
    for t in texts:
        grams = _ngrams(t, n)
        if grams:
            rates.append(1 - len(set(grams)) / len(grams))
    return sum(rates) / len(rates) if rates else 0.0
