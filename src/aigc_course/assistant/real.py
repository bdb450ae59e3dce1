"""The real thing: LoRA + DPO on a released instruction-tuned LLM from the Hugging Face Hub.

Taught in chapter 5.14 ("Building a tiny assistant"), section "The real thing, guarded". The
chapter tunes its own tiny GPT with LoRA and DPO written from scratch; this module applies the
same two ideas to a real model (``aigc_course.apps.hub.INSTRUCT_LM``, Qwen2.5-0.5B-Instruct)
with the ``peft`` library's LoRA and the course's own DPO loss:

1. :func:`encode_hf_pairs`: each preference pair (prompt, chosen, rejected) becomes two token
   sequences, the prompt in the model's chat template followed by a response and the end-of-turn
   token; targets are -100 on the prompt and the padding, so only response tokens are scored.
2. :func:`lora_dpo`: wrap the model with LoRA adapters (``peft``), compute the reference
   log-probabilities once with the adapters switched off (the frozen base model *is* the
   reference, so no second copy is held in memory), then take DPO steps on the adapters with
   :func:`aigc_course.assistant.preference.dpo_loss` (Rafailov et al., 2023, eq. 7).
3. :func:`success_rate`: greedy replies through :func:`aigc_course.apps.hub.chat`, scored by
   the task checkers of :mod:`aigc_course.assistant.tasks`.
4. :func:`real_section`: the chapter's whole section: pairs of (reference answer, the model's
   own reply) ranked by the checkers, LoRA + DPO, success on held-out phrasings before and after.

The same code runs in CI on :func:`aigc_course.apps.hub.tiny_instruct_lm` (a random Llama of
the same library classes). Needs ``transformers`` and ``peft``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class RealDPOConfig:
    steps: int = 30
    beta: float = 0.1  # strength of the KL pull towards the reference model
    r: int = 8  # LoRA rank
    alpha: float = 16.0  # LoRA scale numerator: the update is (alpha / r) B A
    lr: float = 2e-4  # adapters tolerate larger steps than full fine-tuning
    batch_size: int = 4
    max_len: int = 128  # tokens per sequence (prompt + response)
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    seed: int = 0


class LogitsOnly(nn.Module):
    """Adapts a Hugging Face causal LM to the course's interface: ids (B, T) -> logits (B, T, V).

    Sequences are right-padded, so with a causal model the padding after a response cannot change
    the logits of the tokens before it: no attention mask is needed."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=idx).logits


def as_text_pairs(pairs) -> list[dict]:
    """``pairs`` as ``{"prompt", "chosen", "rejected"}`` dicts; accepts such dicts or the
    :class:`~aigc_course.assistant.preference.PreferencePair` objects the course builds."""
    if not isinstance(pairs, (list, tuple)) or not pairs:
        raise ValueError("pairs must be a non-empty list of {'prompt', 'chosen', 'rejected'} dicts "
                         "or PreferencePair objects.")
    out = []
    for i, p in enumerate(pairs):
        if hasattr(p, "example") and hasattr(p, "chosen") and hasattr(p, "rejected"):
            p = {"prompt": p.example.instruction, "chosen": p.chosen, "rejected": p.rejected}
        if not isinstance(p, dict) or not {"prompt", "chosen", "rejected"} <= set(p):
            raise ValueError(f"pairs[{i}] must have a 'prompt', a 'chosen' and a 'rejected' text, got {p!r}.")
        out.append(p)
    return out


def encode_hf_pairs(tok, pairs, max_len: int = 128) -> dict[str, torch.Tensor]:
    """Token ids and next-token targets (-100 = not scored) of the chosen and rejected responses.

    Returns ``{"chosen_ids", "chosen_targets", "rejected_ids", "rejected_targets"}``, each (N, T)
    long, right-padded with the tokenizer's pad token, laid out as ``GPT.forward(ids, targets)``
    and :func:`~aigc_course.assistant.preference.response_logprobs` expect: ``targets[:, t]`` is
    the token at t + 1 where that token belongs to the response (its end-of-turn token included).
    """
    pairs = as_text_pairs(pairs)
    if tok.pad_token_id is None or tok.eos_token_id is None:
        raise ValueError("The tokenizer needs a pad and an eos token (set tok.pad_token = tok.eos_token).")
    out = {}
    for side in ("chosen", "rejected"):
        rows, targets = [], []
        for p in pairs:
            prompt = tok.apply_chat_template([{"role": "user", "content": p["prompt"]}],
                                             add_generation_prompt=True, tokenize=False)
            prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
            resp_ids = tok(p[side], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            seq = (prompt_ids + resp_ids)[: max_len + 1]
            if len(seq) <= len(prompt_ids):
                raise ValueError(f"max_len={max_len} leaves no room for the response after a prompt "
                                 f"of {len(prompt_ids)} tokens: raise max_len or shorten the prompt.")
            rows.append(seq[:-1])  # inputs; position t predicts seq[t + 1]
            targets.append([-100] * (len(prompt_ids) - 1) + seq[len(prompt_ids):])
        T = max(map(len, rows))
        ids_t = torch.full((len(rows), T), tok.pad_token_id, dtype=torch.long)
        tgt_t = torch.full((len(rows), T), -100, dtype=torch.long)
        for i, (r, t) in enumerate(zip(rows, targets)):
            ids_t[i, : len(r)], tgt_t[i, : len(t)] = torch.tensor(r), torch.tensor(t)
        out[f"{side}_ids"], out[f"{side}_targets"] = ids_t, tgt_t
    return out


def add_peft_lora(model: nn.Module, cfg: RealDPOConfig):
    """``model`` wrapped by ``peft`` with LoRA adapters on ``cfg.target_modules`` (in place)."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=0.0,
                      target_modules=list(cfg.target_modules), task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def lora_dpo(model: nn.Module, tok, pairs: list[dict], cfg: RealDPOConfig | None = None, **overrides):
    """Tune ``model`` on preference ``pairs`` with LoRA adapters and the DPO loss.

    Args:
        model: a Hugging Face causal LM (``hub.load_instruct_lm()`` or ``hub.tiny_instruct_lm()``).
        tok: its tokenizer (with a chat template).
        pairs: ``[{"prompt": str, "chosen": str, "rejected": str}, ...]``.
        cfg: a :class:`RealDPOConfig`; keyword ``overrides`` replace its fields (``steps=10``).
    Returns ``(peft_model, history)``: the model with its adapters (generate with it as with the
    original; ``peft_model.disable_adapter()`` switches them off), and a dict of per-step lists
    (``loss``, ``reward_margin``, ``accuracy``) plus the parameter counts.
    """
    from aigc_course.assistant.preference import dpo_loss, response_logprobs

    cfg = cfg or RealDPOConfig()
    unknown = set(overrides) - set(asdict(cfg))
    if unknown:
        raise TypeError(f"Unknown RealDPOConfig fields {sorted(unknown)}; known: {sorted(asdict(cfg))}.")
    cfg = RealDPOConfig(**{**asdict(cfg), **overrides})
    if cfg.steps < 1 or cfg.batch_size < 1 or cfg.beta <= 0:
        raise ValueError(f"steps and batch_size must be >= 1 and beta > 0, got {cfg}.")
    batch = encode_hf_pairs(tok, pairs, cfg.max_len)
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    n_total = sum(p.numel() for p in model.parameters())

    peft_model = add_peft_lora(model, cfg)
    lm = LogitsOnly(peft_model)
    with torch.no_grad(), peft_model.disable_adapter():  # adapters off: the reference model
        peft_model.eval()
        ref_chosen = response_logprobs(lm, batch["chosen_ids"], batch["chosen_targets"])  # (N,)
        ref_rejected = response_logprobs(lm, batch["rejected_ids"], batch["rejected_targets"])

    params = [p for p in peft_model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(cfg.seed)
    n = batch["chosen_ids"].shape[0]
    history = {"loss": [], "reward_margin": [], "accuracy": [],
               "trainable_params": sum(p.numel() for p in params), "total_params": n_total}
    peft_model.train()
    for _ in range(cfg.steps):
        i = torch.randperm(n, generator=g)[: cfg.batch_size].to(device)
        pi_chosen = response_logprobs(lm, batch["chosen_ids"][i], batch["chosen_targets"][i])
        pi_rejected = response_logprobs(lm, batch["rejected_ids"][i], batch["rejected_targets"][i])
        loss, _ = dpo_loss(pi_chosen, pi_rejected, ref_chosen[i], ref_rejected[i], cfg.beta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        margin = cfg.beta * ((pi_chosen - ref_chosen[i]) - (pi_rejected - ref_rejected[i])).detach()
        history["loss"].append(loss.item())
        history["reward_margin"].append(margin.mean().item())
        history["accuracy"].append((margin > 0).float().mean().item())
    peft_model.eval()
    return peft_model, history


def success_rate(model: nn.Module, tok, examples, max_new_tokens: int = 32) -> dict[str, float]:
    """Share of ``examples`` (from ``assistant.tasks.make_examples``) whose greedy reply passes the
    task's checker, per task and ``"all"``."""
    from aigc_course.apps.hub import chat
    from aigc_course.assistant.tasks import success

    if not examples:
        raise ValueError("success_rate needs at least one example.")
    hits: dict[str, list[bool]] = {}
    for ex in examples:
        answer = chat(model, tok, ex.instruction, max_new_tokens=max_new_tokens, temperature=0.0)[0]
        hits.setdefault(ex.task, []).append(bool(success(ex, answer.strip())))
    rates = {task: sum(h) / len(h) for task, h in hits.items()}
    every = [x for h in hits.values() for x in h]
    rates["all"] = sum(every) / len(every)
    return rates


def real_section(model: nn.Module, tok, n_pairs: int = 64, n_test: int = 40, tasks=("arith", "string"),
                 max_new_tokens: int = 24, seed: int = 0, **dpo_overrides) -> dict:
    """The chapter's real-thing section in one call: the model's own replies to training
    instructions, paired with the reference answers and ranked by the checkers, tune it with LoRA +
    DPO; task success on held-out phrasings of the test split is measured before and after.

    Returns ``{"before", "after"}`` (success rates per task) and ``"history"`` of :func:`lora_dpo`,
    ``"pairs"`` (how many survived the ties), ``"examples"`` (a few replies before and after).
    """
    from aigc_course.apps.hub import chat
    from aigc_course.assistant.preference import make_preference_pairs
    from aigc_course.assistant.tasks import make_examples

    train = make_examples("train", n_pairs, seed=seed, tasks=tasks)
    test = make_examples("test", n_test, seed=seed, tasks=tasks, phrasing="heldout")
    own = [chat(model, tok, ex.instruction, max_new_tokens=max_new_tokens, temperature=0.0)[0].strip()
           for ex in train]
    pairs = make_preference_pairs(train, [ex.response for ex in train], own)  # ties dropped
    if not pairs:
        raise ValueError("Every reply of the model already matches its reference: no preference pairs.")
    show = test[:3]
    before = success_rate(model, tok, test, max_new_tokens)
    replies_before = [chat(model, tok, ex.instruction, max_new_tokens=max_new_tokens, temperature=0.0)[0]
                      for ex in show]
    peft_model, history = lora_dpo(model, tok, pairs, **dpo_overrides)
    after = success_rate(peft_model, tok, test, max_new_tokens)
    replies_after = [chat(peft_model, tok, ex.instruction, max_new_tokens=max_new_tokens, temperature=0.0)[0]
                     for ex in show]
    examples = [{"instruction": ex.instruction, "reference": ex.response, "before": b, "after": a}
                for ex, b, a in zip(show, replies_before, replies_after)]
    return {"before": before, "after": after, "history": history, "pairs": len(pairs),
            "examples": examples, "model": peft_model}


__all__ = ["LogitsOnly", "RealDPOConfig", "add_peft_lora", "as_text_pairs", "encode_hf_pairs", "lora_dpo",
           "real_section", "success_rate"]
