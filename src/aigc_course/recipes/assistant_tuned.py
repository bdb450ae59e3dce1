"""Recipe ``assistant_tuned``: LoRA adapters for the tiny assistant's later stages (chapter 5.14).

Starting from the shipped ``assistant_base`` and ``assistant_sft`` GPTs (recipe ``assistant_gpt``),
this recipe trains four small sets of weights and ships only them, as float16 in one file:

1. ``lora_sft``: supervised fine-tuning of the *base* model with LoRA adapters (Hu et al., 2021)
   on the same instruction data as the full SFT, response-only loss: LoRA against full fine-tuning.
   The three role tokens never occurred in pretraining; with ``token_rows`` their embedding
   rows (tied to the output head) train too (``lora.train_token_rows``, 288 numbers; ``peft``
   calls this ``trainable_token_indices``).
2. ``reward``: a reward model (``preference.GPTRewardModel``: the SFT trunk with adapters, a new
   scalar head) fitted with the Bradley-Terry loss to preference pairs: two replies sampled from
   the SFT model at temperature 1 per training prompt, ranked by ``tasks.check``, ties dropped.
3. ``dpo``: DPO (Rafailov et al., 2023) of the SFT model with adapters on the same pairs, plus
   ``dpo_nll`` times the chosen replies' NLL per token (Pang et al., 2024): plain DPO at a
   higher rate lowered the SFT model's task success.
4. ``rlhf``: RLHF (Ouyang et al., 2022) of the SFT model with adapters: the policy's samples scored
   by the reward model of step 2, minus beta times the KL to the SFT model, PPO clipping.

The adapters fit exactly the base and SFT weights they were trained on: the card records both
files' SHA-256 and :func:`load` warns when they differ (retrain this recipe after ``assistant_gpt``).
Metrics (:func:`evaluate_stages`, greedy replies, test split) are measured on the float16 adapters.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import asdict, dataclass, replace
from statistics import mean
from types import SimpleNamespace

import torch
from torch import nn

from aigc_course.assistant.chat import encode_sft, format_prompt, replies
from aigc_course.assistant.lora import add_lora, lora_state_dict, train_token_rows
from aigc_course.assistant.models import load_or_train as load_stage
from aigc_course.assistant.preference import (
    GPTRewardModel,
    dpo_loss_fn,
    encode_pairs,
    make_preference_pairs,
    reward_lengths,
    reward_model_loss,
)
from aigc_course.assistant.rlhf import RLHFConfig, sampled_kl, train_rlhf, win_rate  # noqa: F401 (re-exported)
from aigc_course.assistant.tasks import make_examples
from aigc_course.checkpoint import CheckpointError, load_tensors
from aigc_course.data.download import sha256sum
from aigc_course.pretrained import find_weights, load_card, save_pretrained, verify_file
from aigc_course.recipes.assistant_gpt import sft_loss
from aigc_course.recipes.cards import run_card, train_command
from aigc_course.runtime import get_device, is_fast, set_seed
from aigc_course.train import TrainConfig, fit, random_batches

NAME = "assistant_tuned"
KINDS = ("lora_sft", "reward", "dpo", "rlhf")
MIN_PAIRS = 16  # below this, pairs of the reference response vs a sample are added


@dataclass
class TunedConfig:
    r: int = 8  # LoRA rank of every adapter
    alpha: float = 16.0
    targets: tuple[str, ...] = ("qkv", "proj", "fc")
    batch_size: int = 32  # SFT batches; preference batches are pref_batch pairs
    sft_examples: int = 40000  # drawn like the full SFT's (assistant_gpt), fewer of them
    sft_steps: int = 1000  # the full SFT took 5,000 steps of 32; adapters learn faster at a larger rate
    sft_lr: float = 4e-3  # full fine-tuning used 2e-3
    token_rows: bool = True  # LoRA SFT also trains the role tokens' embedding rows
    pair_prompts: int = 1000  # training prompts sampled twice for preference pairs
    pair_temperature: float = 1.0
    pref_batch: int = 16
    rm_steps: int = 300
    rm_lr: float = 1e-3
    dpo_steps: int = 300
    dpo_lr: float = 3e-4
    dpo_beta: float = 0.1
    dpo_nll: float = 1.0  # weight of the chosen replies' NLL added to DPO's loss (preference.dpo_loss_fn)
    rlhf_steps: int = 60
    rlhf_lr: float = 3e-4
    rlhf_beta: float = 0.2
    rlhf_prompts_per_step: int = 4
    rlhf_samples_per_prompt: int = 4
    max_new_tokens: int = 48  # of the sampled replies (pairs, RLHF)
    eval_new_tokens: int = 88  # of the greedy test replies, as assistant_gpt's card
    eval_examples: int = 100  # per phrasing, test split (20 per task)
    kl_prompts: int = 20  # test prompts (4 sampled replies each) of the KL to the SFT model

    @classmethod
    def fast(cls) -> TunedConfig:
        return cls(sft_examples=64, sft_steps=3, pair_prompts=32, rm_steps=3, dpo_steps=3, rlhf_steps=2, kl_prompts=2,
                   rlhf_prompts_per_step=2, rlhf_samples_per_prompt=2, max_new_tokens=8, eval_new_tokens=8, eval_examples=10,
                   pref_batch=8)


def trimmed(loss_fn):
    """``loss_fn`` on batches of (ids, targets) or (ids, lengths) pairs cut after their last real
    position: rows are far shorter than the block, and every position costs time."""
    def cut(batch):
        out = []
        for x, y in zip(batch[0::2], batch[1::2]):
            width = int(y.max()) if y.dim() == 1 else int((y != -100).nonzero()[:, 1].max()) + 1
            out += [x[:, :width], y if y.dim() == 1 else y[:, :width]]
        return tuple(out)
    return lambda model, batch: loss_fn(model, cut(batch))


def sampled_pairs(model: nn.Module, tok, examples: list, max_new_tokens: int = 48, temperature: float = 1.0,
                  generator: torch.Generator | None = None) -> tuple[list, list[list[str]]]:
    """Preference pairs: two replies sampled per example, ranked by the checkers (ties dropped);
    below MIN_PAIRS pairs (a barely trained model ties almost always) the references are
    paired with the first samples too. Returns (pairs, the two lists of replies)."""
    two = [replies(model, tok, [e.instruction for e in examples], max_new_tokens=max_new_tokens,
                   temperature=temperature, generator=generator) for _ in range(2)]
    pairs = make_preference_pairs(examples, two[0], two[1])
    if len(pairs) < MIN_PAIRS:
        pairs += make_preference_pairs(examples, [e.response for e in examples], two[0])
    return pairs, two


ROLE_IDS = (0, 1, 2)  # chat.ChatTokenizer's user_id, assistant_id, end_id


def adapted(model: nn.Module, cfg: TunedConfig, token_rows: bool = False) -> nn.Module:
    """A copy of ``model`` with LoRA adapters (its own weights frozen); with ``token_rows``, the
    role tokens' embedding rows train as well."""
    out = add_lora(copy.deepcopy(model), r=cfg.r, alpha=cfg.alpha, targets=tuple(cfg.targets))
    return train_token_rows(out, ROLE_IDS) if token_rows else out


def reward_model(sft: nn.Module, cfg: TunedConfig) -> GPTRewardModel:
    """The reward model: the SFT trunk with LoRA adapters, and a trainable scalar head."""
    rm = add_lora(GPTRewardModel.from_gpt(sft), r=cfg.r, alpha=cfg.alpha, targets=tuple(cfg.targets))
    rm.head.requires_grad_(True)
    return rm


def adapter_state(model: nn.Module, kind: str) -> dict[str, torch.Tensor]:
    state = lora_state_dict(model)
    if kind == "reward":
        state.update({f"head.{k}": v for k, v in model.head.state_dict().items()})
    return state


@torch.no_grad()
def score_rows(rm: GPTRewardModel, rows: list[list[int]], pad_id: int) -> torch.Tensor:
    """Reward-model scores (N,) of token rows (prompt + reply ids), read at each row's last token."""
    device = next(rm.parameters()).device
    rows = [r[: rm.config.block_size] for r in rows]
    ids = torch.full((len(rows), max(map(len, rows))), pad_id, dtype=torch.long)  # (N, T) right-padded
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
    lengths = torch.tensor([len(r) for r in rows])
    return torch.cat([rm(ids[i:i + 256].to(device), lengths[i:i + 256].to(device)).float().cpu()
                      for i in range(0, len(rows), 256)])


def rm_scores(rm: GPTRewardModel, tok, instructions: list[str], answers: list[str]) -> torch.Tensor:
    """Reward-model scores (N,) of each (instruction, answer) in the chat template."""
    return score_rows(rm, [tok.encode(format_prompt(x)) + tok.encode(a) for x, a in zip(instructions, answers)],
                      tok.pad_id)


def rm_reward_fn(rm: GPTRewardModel, pad_id: int):
    """``reward_fn(prompt_ids, replies)`` for ``assistant.rlhf``: the reward model's score."""
    def reward_fn(prompt: torch.Tensor, reply_ids: list[torch.Tensor]) -> list[float]:
        return score_rows(rm, [prompt.tolist() + y.tolist() for y in reply_ids], pad_id).tolist()
    return reward_fn


def evaluate_stages(models: dict, rm: GPTRewardModel, tok, n: int, max_new_tokens: int = 88,
                    kl_prompts: int = 50, seed: int = 0) -> dict:
    """Every model of ``models`` (name -> GPT; one named ``"sft"``) on the same ``n`` test examples
    per phrasing: greedy replies, success per task, and, against the SFT model, the win rate by
    the checkers and by the reward model and the sampled KL. Returns ``{"success", "win_checker",
    "win_reward", "kl_to_sft", "replies"}``."""
    from aigc_course.assistant.tasks import check, success

    out = {"success": {}, "win_checker": {}, "win_reward": {}, "kl_to_sft": {}, "replies": {}}
    for phrasing in ("train", "heldout"):
        examples = make_examples("test", n, seed=seed, phrasing=phrasing)
        texts = [e.instruction for e in examples]
        for name, model in models.items():
            answers = replies(model, tok, texts, max_new_tokens=max_new_tokens)
            out["replies"][name, phrasing] = answers
            ok = [success(e, a) for e, a in zip(examples, answers)]
            table = {t: round(mean([o for e, o in zip(examples, ok) if e.task == t]), 4)
                     for t in sorted({e.task for e in examples})}
            out["success"].setdefault(name, {})[phrasing] = {**table, "all": round(mean(ok), 4)}
        if phrasing == "train":  # win rates against the SFT model's replies
            checks = {m: [check(e, a) for e, a in zip(examples, out["replies"][m, phrasing])] for m in models}
            rewards = {m: rm_scores(rm, tok, texts, out["replies"][m, phrasing]).tolist() for m in models}
            for m in models:
                out["win_checker"][m] = round(win_rate(checks[m], checks["sft"]), 4)
                out["win_reward"][m] = round(win_rate(rewards[m], rewards["sft"]), 4)
    kl_texts = [e.instruction for e in make_examples("test", kl_prompts, seed=seed + 1)]
    for name, model in models.items():
        if name != "sft":
            g = torch.Generator().manual_seed(seed)
            out["kl_to_sft"][name] = round(sampled_kl(model, models["sft"], tok, kl_texts, generator=g), 4)
    return out


def file_sha256(name: str) -> str:
    return sha256sum(find_weights(name)[0])


def train(out_dir=None, fast: bool = False, seed: int = 0) -> dict:
    set_seed(seed)
    device = get_device()
    cfg = TunedConfig.fast() if fast else TunedConfig()
    base, tok = load_stage("assistant_base")
    sft, _ = load_stage("assistant_sft")
    base, sft = base.to(device).eval(), sft.to(device).eval()
    block = sft.config.block_size
    g = torch.Generator().manual_seed(seed)
    seconds, metrics, state = {}, {}, {}

    def run_fit(model, loss_fn, tensors, steps, lr, kind, batch_size=cfg.pref_batch):
        t0 = time.perf_counter()
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
        hist = fit(model, loss_fn, random_batches(*tensors, batch_size=batch_size, generator=g),
                   TrainConfig(steps=steps, lr=lr, warmup=min(50, steps // 10), decay=True, desc=kind),
                   optimizer=opt)
        seconds[kind] = round(time.perf_counter() - t0, 1)
        metrics[f"{kind}_final_loss"] = round(hist.smoothed(20)[-1], 4)

    def finish(model, kind):  # keep exactly the float16 adapters that ship
        with torch.no_grad():
            for p in (q for q in model.parameters() if q.requires_grad):
                p.copy_(p.half().float())
        state.update({f"{kind}.{k}": v.detach().cpu().half() for k, v in adapter_state(model, kind).items()})
        return model.eval()

    # 1. LoRA SFT of the base model
    x, y = encode_sft(tok, make_examples("train", cfg.sft_examples, seed=seed), block)
    lora_sft = adapted(base, cfg, token_rows=cfg.token_rows)
    run_fit(lora_sft, sft_loss, (x, y), cfg.sft_steps, cfg.sft_lr, "lora_sft", cfg.batch_size)
    finish(lora_sft, "lora_sft")
    # 2. preference pairs from two sampled SFT replies per prompt, ranked by the checkers
    t0 = time.perf_counter()
    prompts = make_examples("train", cfg.pair_prompts, seed=seed + 1)
    pairs = sampled_pairs(sft, tok, prompts, cfg.max_new_tokens, cfg.pair_temperature, g)[0]
    n_val = max(1, len(pairs) // 10)
    ids_c, tgt_c, ids_r, tgt_r = encode_pairs(tok, pairs, block)
    seconds["pairs"] = round(time.perf_counter() - t0, 1)
    metrics["pairs"] = {"prompts": len(prompts), "pairs": len(pairs), "validation": n_val}
    train_pairs = (ids_c[n_val:], tgt_c[n_val:], ids_r[n_val:], tgt_r[n_val:])
    # 3. the reward model (Bradley-Terry)
    rm = reward_model(sft, cfg)
    len_c, len_r = reward_lengths(tgt_c), reward_lengths(tgt_r)
    run_fit(rm, trimmed(reward_model_loss), (ids_c[n_val:], len_c[n_val:], ids_r[n_val:], len_r[n_val:]),
            cfg.rm_steps, cfg.rm_lr, "reward")
    finish(rm, "reward")
    with torch.no_grad():
        val = tuple(t[:n_val].to(device) for t in (ids_c, len_c, ids_r, len_r))
        metrics["reward_val_pair_accuracy"] = round(float(reward_model_loss(rm, val)["acc"]), 4)
    # 4. DPO against the frozen SFT model
    dpo = adapted(sft, cfg)
    run_fit(dpo, trimmed(dpo_loss_fn(copy.deepcopy(sft), cfg.dpo_beta, cfg.dpo_nll)), train_pairs, cfg.dpo_steps, cfg.dpo_lr, "dpo")
    finish(dpo, "dpo")
    # 5. RLHF on the reward model's score with a KL penalty to the SFT model
    rlhf = adapted(sft, cfg)
    rl_prompts = [p for e in prompts if len(p := tok.encode_tensor(format_prompt(e.instruction)))
                  + cfg.max_new_tokens <= block]
    rl_cfg = RLHFConfig(beta=cfg.rlhf_beta, lr=cfg.rlhf_lr, steps=cfg.rlhf_steps, prompts_per_step=cfg.rlhf_prompts_per_step,
                        samples_per_prompt=cfg.rlhf_samples_per_prompt, max_new_tokens=cfg.max_new_tokens,
                        stop_id=tok.end_id, inner_epochs=2, clip=0.2)
    t0 = time.perf_counter()
    opt = torch.optim.Adam([p for p in rlhf.parameters() if p.requires_grad], lr=cfg.rlhf_lr)
    hist = train_rlhf(rlhf, copy.deepcopy(sft), rm_reward_fn(rm, tok.pad_id), rl_prompts, rl_cfg, g, opt)
    seconds["rlhf"] = round(time.perf_counter() - t0, 1)
    k = max(1, len(hist["reward"]) // 10)  # means of the first and the last tenth of the steps
    metrics["rlhf_reward_first_last"] = [round(sum(hist["reward"][i]) / k, 4) for i in (slice(k), slice(-k, None))]
    metrics["rlhf_kl_last"] = round(sum(hist["kl"][-k:]) / k, 4)
    finish(rlhf, "rlhf")
    # 6. measure every stage on the same test examples
    t0 = time.perf_counter()
    stages = {"base": base, "sft": sft, "lora_sft": lora_sft, "dpo": dpo, "rlhf": rlhf}
    metrics.update(evaluate_stages(stages, rm, tok, cfg.eval_examples, cfg.eval_new_tokens, cfg.kl_prompts, seed))
    metrics.pop("replies")
    seconds["evaluation"] = round(time.perf_counter() - t0, 1)
    # what save_pretrained and run_card read of a model: its state and its parameters
    adapters = SimpleNamespace(state_dict=lambda: dict(state), parameters=lambda: iter(state.values()))
    card = {
        "name": NAME,
        "arch": "gpt_lora_adapters",
        "config": {"r": cfg.r, "alpha": cfg.alpha, "targets": list(cfg.targets), "kinds": list(KINDS),
                   "token_rows": list(ROLE_IDS) if cfg.token_rows else [],
                   "base": "assistant_base", "sft": "assistant_sft",
                   "base_sha256": file_sha256("assistant_base"), "sft_sha256": file_sha256("assistant_sft")},
        "train_command": train_command(NAME, fast=fast, seed=seed),
        "data": {"dataset": "aigc_course.assistant.tasks (make_examples, split train)", "seed": seed},
        "recipe": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()},
        "weights_dtype": "float16",
        "metrics": metrics,
        "stage_seconds": seconds,
        **run_card(adapters, sum(seconds.values()), device),
    }
    save_pretrained(adapters, NAME, card, out_dir)
    return card


def load(kind: str, device=None) -> nn.Module:
    """The model of stage ``kind`` (``"lora_sft"``, ``"reward"``, ``"dpo"``, ``"rlhf"``): the
    shipped base or SFT GPT with this recipe's adapters loaded (in eval mode)."""
    if kind not in KINDS:
        raise ValueError(f"Unknown stage {kind!r}: use one of {list(KINDS)}.")
    (weights, card_path), card = find_weights(NAME), load_card(NAME)
    verify_file(weights, card, card_path)
    c = card["config"]
    for stage in ("base", "sft"):
        if file_sha256(c[stage]) != c[f"{stage}_sha256"]:
            warnings.warn(f"{c[stage]} is not the model these adapters were trained on; retrain them with "
                          f"`python -m aigc_course.train {NAME}`.", stacklevel=2)
    tensors, _ = load_tensors(weights)
    start, _ = load_stage("assistant_base" if kind == "lora_sft" else "assistant_sft")
    cfg = replace(TunedConfig(), r=c["r"], alpha=c["alpha"], targets=tuple(c["targets"]))
    rows = kind == "lora_sft" and bool(c.get("token_rows"))
    model = reward_model(start, cfg) if kind == "reward" else adapted(start, cfg, token_rows=rows)
    own = {k[len(kind) + 1:]: v.float() for k, v in tensors.items() if k.startswith(kind + ".")}
    if missing := set(adapter_state(model, kind)) - set(own):
        raise ValueError(f"{weights} lacks {len(missing)} tensors of stage {kind!r}; retrain it.")
    model.load_state_dict(own, strict=False)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.to(device or "cpu").eval()


def load_or_train(kind: str, device=None) -> nn.Module:
    """:func:`load`, after training the adapters if they are not there (in fast mode, a few steps)."""
    try:
        load_card(NAME)
    except CheckpointError:
        train(fast=is_fast())
    return load(kind, device)
