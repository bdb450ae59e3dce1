"""RLHF with a KL penalty (assistant.rlhf, chapter 3.9) on a tiny GPT and a toy reward."""

import copy

import pytest
import torch

from aigc_course.assistant.rlhf import (
    RLHFConfig,
    baseline_of,
    policy_kl,
    reply_mask,
    rlhf_step,
    rollout,
    train_rlhf,
)
from aigc_course.models import GPT, GPTConfig
from aigc_course.runtime import set_seed

TARGET = 3  # the toy reward: the fraction of reply tokens equal to TARGET (chance: 1/8)


def toy_reward(prompt, replies):
    return [float((y == TARGET).float().mean()) if len(y) else 0.0 for y in replies]


def setup(seed: int = 0):
    set_seed(seed)
    policy = GPT(GPTConfig(vocab_size=8, block_size=16, n_layer=1, n_head=2, n_embd=16))
    return policy, copy.deepcopy(policy), [torch.tensor([0]), torch.tensor([1, 2])]


def run(beta: float, steps: int = 20, seed: int = 0, **kw):
    policy, ref, prompts = setup(seed)
    cfg = RLHFConfig(beta=beta, lr=3e-2, steps=steps, prompts_per_step=2, samples_per_prompt=8,
                     max_new_tokens=10, **kw)
    return train_rlhf(policy, ref, toy_reward, prompts, cfg, generator=torch.Generator().manual_seed(seed))


def test_reward_rises_clearly_and_kl_grows_without_penalty():
    h = run(beta=0.0, steps=20, inner_epochs=2)
    first, last = h["reward"][0], sum(h["reward"][-3:]) / 3
    assert first < 0.25 and last > 0.8, (first, last)  # from chance (1/8) to nearly always TARGET
    assert h["kl"][0] < 0.5 and h["kl"][-1] > 5.0  # nothing holds the policy near the reference
    assert set(h) == {"reward", "kl", "objective", "loss", "reply_len", "clip_frac"}


def test_large_beta_keeps_kl_near_zero():
    h = run(beta=5.0, steps=12, inner_epochs=2)
    assert max(abs(k) for k in h["kl"]) < 1.0 and sum(h["reward"][-3:]) / 3 < 0.3


def test_determinism_under_a_seed_and_reinforce_path():
    a = run(beta=0.1, steps=3, clip=None)
    b = run(beta=0.1, steps=3, clip=None)
    assert a == b and a["clip_frac"] == [0.0, 0.0, 0.0]


def test_first_ppo_pass_has_the_reinforce_gradient():
    grads = []
    for clip in (None, 0.2):
        policy, ref, prompts = setup()
        cfg = RLHFConfig(beta=0.5, samples_per_prompt=4, max_new_tokens=6, clip=clip)
        opt = torch.optim.SGD(policy.parameters(), lr=0.0)  # keep the weights, look at the gradient
        rlhf_step(policy, ref, toy_reward, prompts, cfg, opt, torch.Generator().manual_seed(5))
        grads.append(torch.cat([p.grad.flatten() for p in policy.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])
    assert grads[0].abs().sum() > 0


def test_reply_mask_and_baselines():
    new = torch.tensor([[5, 7, 2, 7], [1, 1, 1, 1]])
    assert reply_mask(new, stop_id=7).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert reply_mask(new, None).sum() == 8
    R = torch.tensor([1.0, 2.0, 6.0])
    assert baseline_of(R, "loo").tolist() == [4.0, 3.5, 1.5]
    assert baseline_of(R, "mean").tolist() == [3.0, 3.0, 3.0] and baseline_of(R, "none") is None


def test_stop_token_cuts_replies_given_to_the_reward():
    policy, ref, prompts = setup()
    seen = []

    def reward(prompt, replies):
        seen.extend(replies)
        return [0.0] * len(replies)

    cfg = RLHFConfig(samples_per_prompt=4, max_new_tokens=10, stop_id=TARGET)
    stats = rlhf_step(policy, ref, reward, prompts[:1], cfg, torch.optim.SGD(policy.parameters(), 0.0),
                      torch.Generator().manual_seed(0))
    assert all(TARGET not in y.tolist() for y in seen) and stats["reply_len"] <= 10


def test_bad_input_raises():
    policy, ref, prompts = setup()
    opt = torch.optim.SGD(policy.parameters(), lr=0.1)
    cfg = RLHFConfig(samples_per_prompt=2, max_new_tokens=4)
    with pytest.raises(ValueError, match="frozen copy"):
        rlhf_step(policy, policy, toy_reward, prompts, cfg, opt)
    with pytest.raises(ValueError, match="1-D LongTensor"):
        rlhf_step(policy, ref, toy_reward, [torch.tensor([[0]])], cfg, opt)
    with pytest.raises(ValueError, match="non-empty list"):
        train_rlhf(policy, ref, toy_reward, [], cfg)
    with pytest.raises(ValueError, match="block_size 16"):
        rlhf_step(policy, ref, toy_reward, [torch.zeros(15, dtype=torch.long)], cfg, opt)
    with pytest.raises(ValueError, match="2 rewards"):
        rlhf_step(policy, ref, lambda p, ys: [1.0], prompts, cfg, opt)
    with pytest.raises(ValueError, match="baseline"):
        RLHFConfig(baseline="median")
    with pytest.raises(ValueError, match="leave-one-out"):
        RLHFConfig(samples_per_prompt=1)
    with pytest.raises(ValueError, match="clip"):
        RLHFConfig(inner_epochs=3, clip=None)
    with pytest.raises(ValueError, match="beta >= 0"):
        RLHFConfig(beta=-1.0)


def test_rollout_and_policy_kl():
    policy, ref, prompts = setup()
    cfg = RLHFConfig(samples_per_prompt=3, max_new_tokens=5, stop_id=TARGET)
    out = rollout(policy, ref, prompts[1], cfg, torch.Generator().manual_seed(0))
    assert out.idx.shape == (3, 7) and out.prompt_len == 2 and out.logp_tok.shape == (3, 5)
    assert (out.logp_tok[out.mask == 0] == 0).all() and len(out.replies) == 3
    torch.testing.assert_close(out.logp, out.logp_ref)  # an untrained copy: the same model
    assert policy_kl(policy, ref, prompts, cfg, torch.Generator().manual_seed(0)) == 0.0
    with torch.no_grad():
        policy.lm_head.weight.add_(0.3 * torch.randn_like(policy.lm_head.weight))
    assert policy_kl(policy, ref, prompts, RLHFConfig(max_new_tokens=5, kl_estimator="k3")) > 0.0
