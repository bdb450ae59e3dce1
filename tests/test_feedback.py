"""Tests of aigc_course.concepts.feedback (chapter 2.5, transfer learning and learning from feedback)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aigc_course.concepts.feedback import (
    RewardConfig,
    RewardModel,
    bradley_terry_loss,
    kl_to_reference,
    reinforce_loss,
    sequence_logprobs,
)
from aigc_course.models import GPT, GPTConfig


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=11, block_size=12, n_layer=1, n_head=2, n_embd=16)).eval()


def test_sequence_logprobs_shapes_and_value():
    model = tiny_gpt()
    idx = torch.randint(0, 11, (4, 10), generator=torch.Generator().manual_seed(1))
    total = sequence_logprobs(model, idx, prompt_len=3)
    per_tok = sequence_logprobs(model, idx, prompt_len=3, per_token=True)
    assert total.shape == (4,) and per_tok.shape == (4, 7)
    torch.testing.assert_close(per_tok.sum(1), total)
    # by hand: token t is scored by the logits at position t - 1
    logp = F.log_softmax(model(idx), dim=-1)
    manual = sum(logp[:, t - 1].gather(-1, idx[:, t : t + 1]).squeeze(-1) for t in range(3, 10))
    torch.testing.assert_close(total, manual)
    assert (total < 0).all()


def test_sequence_logprobs_has_gradients():
    model = tiny_gpt()
    idx = torch.randint(0, 11, (2, 6))
    sequence_logprobs(model, idx, prompt_len=1).sum().backward()
    assert model.tok_emb.weight.grad is not None and model.tok_emb.weight.grad.abs().sum() > 0


def test_reinforce_matches_exact_bandit_gradient():
    # a 3-arm bandit with a softmax policy: E[r] = sum_a softmax(theta)_a r_a in closed form
    theta = torch.tensor([0.2, -0.5, 0.1], requires_grad=True)
    r = torch.tensor([1.0, 2.0, -0.5])
    (exact,) = torch.autograd.grad((F.softmax(theta, -1) * r).sum(), theta)
    g = torch.Generator().manual_seed(0)
    probs = F.softmax(theta.detach(), -1)
    n = 200_000
    a = torch.multinomial(probs, n, replacement=True, generator=g)
    for baseline in (None, 0.7):
        logp = F.log_softmax(theta, -1)[a]  # (n,)
        (grad_loss,) = torch.autograd.grad(reinforce_loss(logp, r[a], baseline), theta)
        # -grad of the surrogate estimates +grad of E[r]; Monte Carlo error ~ 1/sqrt(n) ~ 0.003
        torch.testing.assert_close(-grad_loss, exact, atol=0.02, rtol=0.0)


def test_reinforce_loss_detaches_rewards():
    logp = torch.zeros(3, requires_grad=True)
    rewards = torch.ones(3, requires_grad=True)
    reinforce_loss(logp, rewards, baseline=torch.zeros(3)).backward()
    assert rewards.grad is None
    torch.testing.assert_close(logp.grad, torch.full((3,), -1.0 / 3))


def test_bradley_terry_equals_neg_log_sigmoid():
    rc, rr = torch.tensor([2.0, -1.0, 0.0, 30.0]), torch.tensor([1.0, 1.0, 0.0, -30.0])
    expected = -torch.log(torch.sigmoid(rc - rr)).mean()
    torch.testing.assert_close(bradley_terry_loss(rc, rr), expected)
    torch.testing.assert_close(
        bradley_terry_loss(torch.zeros(5), torch.zeros(5)), torch.tensor(0.6931472)
    )
    # stable far in the tail, where log(sigmoid(-100)) would underflow to -inf
    torch.testing.assert_close(
        bradley_terry_loss(torch.tensor([-100.0]), torch.tensor([0.0])), torch.tensor(100.0)
    )


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_kl_estimate_matches_exact_categorical(estimator):
    p = torch.tensor([0.5, 0.3, 0.15, 0.05])
    q = torch.tensor([0.25, 0.25, 0.25, 0.25])
    exact = (p * (p / q).log()).sum()
    x = torch.multinomial(p, 100_000, replacement=True, generator=torch.Generator().manual_seed(0))
    est = kl_to_reference(p.log()[x], q.log()[x], estimator=estimator)
    torch.testing.assert_close(est, exact, atol=0.01, rtol=0.0)
    assert kl_to_reference(p.log()[x], p.log()[x], estimator=estimator).item() == 0.0


def test_reward_model_shape_and_bt_training():
    torch.manual_seed(0)
    rm = RewardModel(RewardConfig(vocab_size=5, n_embd=8, hidden=16))
    # rule: more of token 0 is preferred; a few steps of Bradley-Terry learn it
    a = torch.randint(0, 5, (256, 12))
    b = torch.randint(0, 5, (256, 12))
    a_better = (a == 0).sum(1) > (b == 0).sum(1)
    chosen = torch.where(a_better[:, None], a, b)
    rejected = torch.where(a_better[:, None], b, a)
    opt = torch.optim.Adam(rm.parameters(), lr=1e-2)
    for _ in range(100):
        loss = bradley_terry_loss(rm(chosen), rm(rejected))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert rm(a).shape == (256,)
    assert loss.item() < 0.45


def test_bad_input_raises():
    model = tiny_gpt()
    with pytest.raises(ValueError):
        sequence_logprobs(model, torch.zeros(5, dtype=torch.long), prompt_len=1)
    with pytest.raises(ValueError):
        sequence_logprobs(model, torch.zeros(2, 5, dtype=torch.long), prompt_len=5)
    with pytest.raises(ValueError):
        sequence_logprobs(model, torch.zeros(2, 5, dtype=torch.long), prompt_len=0)
    with pytest.raises(ValueError):
        reinforce_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError):
        reinforce_loss(torch.zeros(3, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError):
        reinforce_loss(torch.zeros(3), torch.zeros(3), baseline=torch.zeros(4))
    with pytest.raises(ValueError):
        kl_to_reference(torch.zeros(3), torch.zeros(3), estimator="k2")
    with pytest.raises(ValueError):
        bradley_terry_loss(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError):
        RewardModel()(torch.zeros(3, dtype=torch.long))
