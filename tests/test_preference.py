"""Preferences (assistant/preference.py): DPO against its closed form, the reward model."""

import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from aigc_course.assistant.preference import (
    GPTRewardModel,
    dpo_loss,
    dpo_loss_fn,
    kl_regularised_objective,
    make_preference_pairs,
    optimal_policy,
    response_logprobs,
    reward_lengths,
    reward_model_loss,
    sample_bt_comparisons,
)
from aigc_course.concepts.feedback import sequence_logprobs
from aigc_course.models import GPT, GPTConfig
from aigc_course.train.loop import TrainConfig, fit, random_batches

REWARDS = torch.tensor([1.0, 0.0, -0.5, 2.0, 0.5], dtype=torch.float64)
REF = torch.tensor([0.3, 0.3, 0.2, 0.1, 0.1], dtype=torch.float64)


def test_dpo_loss_is_log2_at_the_reference_and_pushes_the_right_way():
    logp_c = torch.tensor([-3.0, -5.0], requires_grad=True)
    logp_r = torch.tensor([-4.0, -2.0], requires_grad=True)
    loss, stats = dpo_loss(logp_c, logp_r, logp_c.detach(), logp_r.detach(), beta=0.1)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-7)
    assert stats["margin"] == 0.0 and stats["accuracy"] == 0.0
    loss.backward()
    assert (logp_c.grad < 0).all() and (logp_r.grad > 0).all()  # raise chosen, lower rejected
    # the gradient's weight is sigmoid(-margin) * beta / B: 0.5 * 0.1 / 2 at the reference
    torch.testing.assert_close(logp_c.grad, torch.full((2,), -0.025))


def test_dpo_loss_matches_its_formula():
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(6, generator=g) for _ in range(4))
    beta = 0.3
    loss, stats = dpo_loss(pc, pr, rc, rr, beta)
    expected = -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()
    torch.testing.assert_close(loss, expected)
    assert stats["reward_chosen"] == pytest.approx((beta * (pc - rc)).mean().item(), abs=1e-6)


def test_optimal_policy_maximises_the_kl_regularised_objective():
    beta = 0.5
    pi_star = optimal_policy(REF, REWARDS, beta)
    # its value is beta log Z, Z = sum_y pi_ref(y) exp(r(y) / beta)
    j_star = kl_regularised_objective(pi_star, REF, REWARDS, beta)
    z = (REF * torch.exp(REWARDS / beta)).sum()
    assert j_star.item() == pytest.approx(beta * math.log(z.item()), abs=1e-10)
    # gradient ascent on softmax logits finds the same distribution
    theta = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=0.1)
    for _ in range(800):
        opt.zero_grad()
        (-kl_regularised_objective(theta.softmax(-1), REF, REWARDS, beta)).backward()
        opt.step()
    torch.testing.assert_close(theta.softmax(-1).detach(), pi_star, atol=1e-4, rtol=0)
    # beta -> large gives the reference; beta -> small gives argmax r
    torch.testing.assert_close(optimal_policy(REF, REWARDS, 1e4), REF, atol=1e-3, rtol=0)
    assert optimal_policy(REF, REWARDS, 1e-3).argmax().item() == 3


def test_bt_comparisons_follow_the_logistic_link():
    g = torch.Generator().manual_seed(0)
    chosen, rejected = sample_bt_comparisons(REWARDS, 40_000, g)
    assert (chosen != rejected).all()
    pair = ((chosen == 3) & (rejected == 0)) | ((chosen == 0) & (rejected == 3))
    win = ((chosen == 3) & pair).sum().item() / pair.sum().item()
    assert win == pytest.approx(torch.sigmoid(REWARDS[3] - REWARDS[0]).item(), abs=0.02)


def test_tabular_dpo_converges_to_the_closed_form():
    """DPO on Bradley-Terry data from known rewards recovers pi* = pi_ref exp(r / beta) / Z."""
    beta, n = 1.0, 40_000
    g = torch.Generator().manual_seed(0)
    chosen, rejected = sample_bt_comparisons(REWARDS, n, g, ref_probs=REF)
    # the K x K distinct (chosen, rejected) pairs and their counts: the same loss, faster
    pairs, counts = torch.unique(torch.stack([chosen, rejected], 1), dim=0, return_counts=True)
    c, r, w = pairs[:, 0], pairs[:, 1], counts.double() * len(counts) / n
    theta = REF.log().clone().requires_grad_(True)  # the policy starts at the reference
    ref_logp = REF.log()
    opt = torch.optim.Adam([theta], lr=0.05)
    for _ in range(1000):
        logp = theta.log_softmax(-1)
        loss, _ = dpo_loss(logp[c], logp[r], ref_logp[c], ref_logp[r], beta)
        per_pair = -F.logsigmoid(beta * ((logp[c] - ref_logp[c]) - (logp[r] - ref_logp[r])))
        torch.testing.assert_close(loss, per_pair.mean())
        opt.zero_grad()
        (per_pair * w).mean().backward()  # the count-weighted DPO loss of all n pairs
        opt.step()
    pi_dpo = theta.softmax(-1).detach()
    pi_star = optimal_policy(REF, REWARDS, beta)
    # finite-sample error of the MLE: about 0.01 in probability with 40,000 pairs
    err = (pi_dpo - pi_star).abs().max().item()
    assert err < 0.03, err
    assert (REF - pi_star).abs().max().item() > 0.2  # the test is not passed by standing still


def test_response_logprobs_scores_only_targets_and_matches_sequence_logprobs():
    torch.manual_seed(0)
    model = GPT(GPTConfig.tiny(vocab_size=16, block_size=12)).eval()
    idx = torch.randint(0, 16, (3, 10))
    prompt_len = 4
    ids, targets = idx[:, :-1], idx[:, 1:].clone()
    targets[:, : prompt_len - 1] = -100  # the prompt's next tokens are not scored
    with torch.no_grad():
        ours = response_logprobs(model, ids, targets)
        ref = sequence_logprobs(model, idx, prompt_len)
    torch.testing.assert_close(ours, ref)
    # padding beyond the response (targets -100) changes nothing
    padded_ids = torch.cat([ids, torch.zeros(3, 2, dtype=torch.long)], 1)
    padded_t = torch.cat([targets, torch.full((3, 2), -100)], 1)
    with torch.no_grad():
        torch.testing.assert_close(response_logprobs(model, padded_ids, padded_t), ours)
    assert reward_lengths(padded_t).tolist() == [9, 9, 9]
    with pytest.raises(ValueError, match="no scored token"):
        response_logprobs(model, ids, torch.full_like(ids, -100))


def test_dpo_loss_fn_trains_a_gpt_in_the_right_direction():
    torch.manual_seed(0)
    ref = GPT(GPTConfig.tiny(vocab_size=8, block_size=8))
    policy = GPT(GPTConfig.tiny(vocab_size=8, block_size=8))
    policy.load_state_dict(ref.state_dict())
    ids_c = torch.tensor([[1, 2, 3, 3]] * 4)
    ids_r = torch.tensor([[1, 2, 4, 4]] * 4)
    tgt_c = torch.tensor([[-100, 3, 3, 0]] * 4)
    tgt_r = torch.tensor([[-100, 4, 4, 0]] * 4)
    loss_fn = dpo_loss_fn(ref, beta=0.5)
    out0 = loss_fn(policy, (ids_c, tgt_c, ids_r, tgt_r))
    assert out0["loss"].item() == pytest.approx(math.log(2), abs=1e-6)
    fit(policy, loss_fn, [(ids_c, tgt_c, ids_r, tgt_r)],
        TrainConfig(steps=20, lr=1e-2, progress=False))
    out = loss_fn(policy, (ids_c, tgt_c, ids_r, tgt_r))
    assert out["loss"].item() < 0.3 and out["accuracy"].item() == 1.0


def test_reward_model_learns_bradley_terry_preferences():
    """Sequences whose true reward is the count of token 1; pairs labelled by Bradley-Terry."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    N, T, V = 1024, 10, 6
    seqs = torch.randint(0, V, (2 * N, T), generator=g)
    lengths = torch.randint(4, T + 1, (2 * N,), generator=g)
    pos = torch.arange(T)
    seqs = torch.where(pos < lengths[:, None], seqs, 0)  # right padding with id 0 (never scored)
    true_r = ((seqs == 1) & (pos < lengths[:, None])).sum(1).double()
    a, b = torch.arange(N), torch.arange(N, 2 * N)
    a_wins = torch.rand(N, generator=g, dtype=torch.float64) < torch.sigmoid(true_r[a] - true_r[b])
    c, r = torch.where(a_wins, a, b), torch.where(a_wins, b, a)
    model = GPTRewardModel(GPTConfig(vocab_size=V, block_size=T, n_layer=1, n_head=2, n_embd=32))
    batches = random_batches(seqs[c], lengths[c], seqs[r], lengths[r], batch_size=64, generator=g)
    fit(model, reward_model_loss, batches, TrainConfig(steps=300, lr=3e-3, progress=False))
    test = torch.randint(0, V, (400, T), generator=g)
    test_r = (test == 1).sum(1).double()
    with torch.no_grad():
        scores = model(test).double()
    rank = lambda x: x.argsort().argsort().double()  # noqa: E731
    spearman = torch.corrcoef(torch.stack([rank(scores), rank(test_r)]))[0, 1].item()
    assert spearman > 0.8


def test_reward_model_from_gpt_copies_the_trunk():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig.tiny(vocab_size=12, block_size=8))
    rm = GPTRewardModel.from_gpt(gpt)
    torch.testing.assert_close(rm.trunk.tok_emb.weight, gpt.tok_emb.weight)
    idx = torch.randint(0, 12, (2, 8))
    s_full = rm(idx)
    s_short = rm(idx[:, :5], torch.tensor([5, 5]))
    torch.testing.assert_close(rm(idx, torch.tensor([5, 5])), s_short)  # causal: padding unseen
    assert s_full.shape == (2,)
    with pytest.raises(ValueError, match="lengths"):
        rm(idx, torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="causal"):
        GPTRewardModel(GPTConfig(causal=False))


@dataclass
class _Ex:
    task: str
    instruction: str
    response: str
    meta: dict


def test_make_preference_pairs_ranks_by_the_checker_and_drops_ties():
    exs = [_Ex("arith", f"{i}+1=", str(i + 1), {}) for i in range(3)]

    def check(ex, reply):
        return float(reply.strip() == ex.response)

    pairs = make_preference_pairs(exs, ["1", "9", "3"], ["7", "2", "3"], check=check)
    assert [(p.chosen, p.rejected) for p in pairs] == [("1", "7"), ("2", "9")]
    assert all(p.score_chosen > p.score_rejected for p in pairs)
    with pytest.raises(ValueError, match="same length"):
        make_preference_pairs(exs, ["1"], ["2"], check=check)


def test_encode_pairs_lays_out_chosen_and_rejected_like_sft():
    from aigc_course.assistant.chat import ChatTokenizer
    from aigc_course.assistant.preference import encode_pairs

    tok = ChatTokenizer.from_text("")
    ex = _Ex("arith", "2+2=", "4", {})
    pairs = make_preference_pairs([ex], ["5"], ["4"], check=lambda e, a: float(a == e.response))
    ids_c, tgt_c, ids_r, tgt_r = encode_pairs(tok, pairs, block_size=16)
    assert ids_c.shape == tgt_c.shape == ids_r.shape == (1, 16)
    assert tok.decode(tgt_c[0][tgt_c[0] != -100]) == "4<|end|>"
    assert tok.decode(tgt_r[0][tgt_r[0] != -100]) == "5<|end|>"
    n = reward_lengths(tgt_c)[0].item()  # the reward is read where the last reply char sits
    assert tok.decode(ids_c[0, :n]) == "<|user|>2+2=<|assistant|>4"
    with pytest.raises(ValueError, match="No preference pairs"):
        encode_pairs(tok, [], block_size=16)


def test_bad_input_raises():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(x, x, x, x, beta=0.0)
    with pytest.raises(ValueError, match="same shape"):
        dpo_loss(x, torch.zeros(2), x, x, beta=0.1)
    with pytest.raises(ValueError, match="sum to 1"):
        optimal_policy(torch.tensor([0.5, 0.6]), torch.zeros(2), 1.0)
    with pytest.raises(ValueError, match="same shape"):
        optimal_policy(REF, torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="K >= 2"):
        sample_bt_comparisons(torch.zeros(1), 5)


def test_dpo_loss_and_stats_equal_trl():
    """TRL's DPO trainer computes its loss inside ``_compute_loss``; run that method on a stub
    trainer and a stub model that returns chosen-then-rejected per-token log-probs."""
    pytest.importorskip("trl")
    from collections import defaultdict
    from types import SimpleNamespace

    from trl.trainer.dpo_trainer import DPOTrainer

    g = torch.Generator().manual_seed(0)
    B, T, beta = 4, 6, 0.2
    per_token = -torch.rand(2 * B, T - 1, generator=g)  # (2B, T-1): chosen rows, then rejected
    completion = torch.ones(2 * B, T, dtype=torch.long)
    ref = -torch.rand(2 * B, generator=g) * 5
    outputs = SimpleNamespace(log_probs=per_token, entropy=torch.zeros(2 * B, T - 1),
                              mean_logits=torch.zeros(2 * B, T - 1),
                              is_top1=torch.zeros(2 * B, T - 1, dtype=torch.bool))

    def model(**kw):
        return outputs

    model.training = True
    accel = SimpleNamespace(device="cpu", gather=lambda x: x, gather_for_metrics=lambda x: x)
    stub = SimpleNamespace(
        model=model, accelerator=accel, aux_loss_enabled=False, ld_alpha=None,
        precompute_ref_logps=True, f_divergence_type="reverse_kl", loss_types=["sigmoid"],
        loss_weights=[1.0], beta=beta, use_weighting=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0, _tp_size=1)
    inputs = {"input_ids": torch.zeros(2 * B, T, dtype=torch.long),
              "attention_mask": completion, "completion_mask": completion,
              "ref_chosen_logps": ref[:B], "ref_rejected_logps": ref[B:]}
    trl_loss = DPOTrainer._compute_loss(stub, model, inputs, return_outputs=False)
    logps = per_token.sum(1)
    ours, stats = dpo_loss(logps[:B], logps[B:], ref[:B], ref[B:], beta)
    torch.testing.assert_close(ours, trl_loss)
    m = stub._metrics["train"]
    for ours_key, trl_key in [("reward_chosen", "rewards/chosen"), ("margin", "rewards/margins"),
                              ("reward_rejected", "rewards/rejected"),
                              ("accuracy", "rewards/accuracies")]:
        assert stats[ours_key] == pytest.approx(m[trl_key][0], abs=1e-6), ours_key


def test_dpo_nll_term_equals_trl_sigmoid_plus_sft():
    """``dpo_loss_fn(..., nll_weight=a)`` = DPO + a * the chosen tokens' mean NLL, as TRL's
    ``loss_type=["sigmoid", "sft"]`` with ``loss_weights=[1, a]`` computes it."""
    pytest.importorskip("trl")
    from collections import defaultdict
    from types import SimpleNamespace

    from trl.trainer.dpo_trainer import DPOTrainer

    torch.manual_seed(0)
    B, T, beta, a = 3, 6, 0.3, 0.7
    ref, policy = (GPT(GPTConfig.tiny(vocab_size=8, block_size=8)) for _ in range(2))
    g = torch.Generator().manual_seed(1)
    ids_c, ids_r = torch.randint(0, 8, (B, T), generator=g), torch.randint(0, 8, (B, T), generator=g)
    tgt_c, tgt_r = torch.randint(0, 8, (B, T), generator=g), torch.randint(0, 8, (B, T), generator=g)
    tgt_c[0, :3], tgt_r[1, :2] = -100, -100  # prompts of different lengths: the NLL is per token, not per reply
    ours = dpo_loss_fn(ref, beta, nll_weight=a)(policy, (ids_c, tgt_c, ids_r, tgt_r))

    def per_token(model, ids, tgt):  # (B, T) log-probs of every target
        logits = model(ids)
        logits = logits[0] if isinstance(logits, tuple) else logits  # (B, T, V)
        return torch.log_softmax(logits, -1).gather(-1, tgt.clamp(min=0)[..., None])[..., 0] * (tgt != -100)

    with torch.no_grad():
        lp = torch.cat([per_token(policy, ids_c, tgt_c), per_token(policy, ids_r, tgt_r)])  # (2B, T)
        ref_lp = torch.cat([per_token(ref, ids_c, tgt_c), per_token(ref, ids_r, tgt_r)]).sum(1)
    mask = torch.cat([tgt_c, tgt_r]) != -100  # (2B, T)
    nll = -lp[:B].sum() / mask[:B].sum()
    by_hand = dpo_loss(lp[:B].sum(1), lp[B:].sum(1), ref_lp[:B], ref_lp[B:], beta)[0] + a * nll
    torch.testing.assert_close(ours["loss"].detach(), by_hand)
    assert ours["nll"].item() == pytest.approx(nll.item(), rel=1e-5)

    outputs = SimpleNamespace(log_probs=lp, entropy=torch.zeros_like(lp), mean_logits=torch.zeros_like(lp),
                              is_top1=torch.zeros_like(lp, dtype=torch.bool))

    def model(**kw):
        return outputs

    model.training = True
    completion = torch.cat([torch.ones(2 * B, 1, dtype=torch.long), mask.long()], 1)  # TRL shifts it by one
    stub = SimpleNamespace(
        model=model, accelerator=SimpleNamespace(device="cpu", gather=lambda x: x, gather_for_metrics=lambda x: x),
        aux_loss_enabled=False, ld_alpha=None, precompute_ref_logps=True, f_divergence_type="reverse_kl",
        loss_types=["sigmoid", "sft"], loss_weights=[1.0, a], beta=beta, use_weighting=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)}, _total_train_tokens=0, _tp_size=1)
    inputs = {"input_ids": torch.zeros(2 * B, T + 1, dtype=torch.long), "attention_mask": completion,
              "completion_mask": completion, "ref_chosen_logps": ref_lp[:B], "ref_rejected_logps": ref_lp[B:]}
    torch.testing.assert_close(ours["loss"].detach(), DPOTrainer._compute_loss(stub, model, inputs, return_outputs=False))
    with pytest.raises(ValueError, match="nll_weight"):
        dpo_loss_fn(ref, beta, nll_weight=-1.0)
