"""LoRA from scratch (assistant/lora.py): equal to peft's LoRA, exact merge, parameter counts."""

import copy

import pytest
import torch
from torch import nn

from aigc_course.assistant.lora import (
    LoRALinear,
    add_lora,
    energy_kept,
    lora_layers,
    lora_state_dict,
    merge_lora,
    train_token_rows,
    trainable_parameters,
    truncate_update,
    update_spectrum,
)
from aigc_course.models import GPT, GPTConfig


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 20)
        self.proj = nn.Linear(20, 6)

    def forward(self, x):
        return self.proj(torch.tanh(self.fc(x)))


def _random_B(model):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.1)


def test_lora_linear_starts_equal_to_base_and_counts_parameters():
    torch.manual_seed(0)
    base = nn.Linear(16, 24)
    x = torch.randn(5, 16)
    y0 = base(x)
    layer = LoRALinear(copy.deepcopy(base), r=4, alpha=8)
    torch.testing.assert_close(layer(x), y0)  # B = 0 at the start
    assert trainable_parameters(layer) == 4 * (16 + 24)
    assert layer.scaling == 2.0
    assert not layer.base.weight.requires_grad and not layer.base.bias.requires_grad


def test_matches_peft_outputs_and_gradients():
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    ours = TwoLayer()
    theirs = copy.deepcopy(ours)
    add_lora(ours, r=4, alpha=8, targets=("fc", "proj"))
    _random_B(ours)
    cfg = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["fc", "proj"])
    theirs = peft.get_peft_model(theirs, cfg)
    with torch.no_grad():
        for name in ("fc", "proj"):
            mine = getattr(ours, name)
            other = getattr(theirs.base_model.model, name)
            other.lora_A["default"].weight.copy_(mine.lora_A)
            other.lora_B["default"].weight.copy_(mine.lora_B)
    x = torch.randn(7, 12)
    y_ours, y_theirs = ours(x), theirs(x)
    torch.testing.assert_close(y_ours, y_theirs, atol=1e-6, rtol=1e-6)
    y_ours.square().sum().backward()
    y_theirs.square().sum().backward()
    for name in ("fc", "proj"):
        mine = getattr(ours, name)
        other = getattr(theirs.base_model.model, name)
        torch.testing.assert_close(mine.lora_A.grad, other.lora_A["default"].weight.grad,
                                   atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(mine.lora_B.grad, other.lora_B["default"].weight.grad,
                                   atol=1e-6, rtol=1e-6)
    assert trainable_parameters(ours) == sum(
        p.numel() for p in theirs.parameters() if p.requires_grad)


def test_same_initialisation_scheme_as_peft():
    """A is Kaiming-uniform with a = sqrt(5): bound 1 / sqrt(d_in); B is zero."""
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(400, 30), r=8, alpha=16)
    bound = 1 / 400 ** 0.5
    assert layer.lora_A.abs().max() <= bound
    assert layer.lora_A.abs().max() > 0.9 * bound
    assert torch.count_nonzero(layer.lora_B) == 0


def test_gpt_adapters_merge_unmerge_and_only_adapters_get_gradients():
    torch.manual_seed(0)
    cfg = GPTConfig.tiny(vocab_size=20, block_size=16)
    model = GPT(cfg)
    before = copy.deepcopy(model.state_dict())
    add_lora(model, r=4, alpha=8)
    layers = lora_layers(model)
    assert len(layers) == 4 * cfg.n_layer  # qkv, attn.proj, fc, mlp.proj per block
    C = cfg.n_embd
    per_block = 4 * ((C + 3 * C) + (C + C) + (C + 4 * C) + (4 * C + C))
    assert trainable_parameters(model) == cfg.n_layer * per_block
    _random_B(model)
    idx = torch.randint(0, 20, (3, 10))
    _, loss = model(idx, idx)
    loss.backward()
    for name, p in model.named_parameters():
        is_adapter = name.endswith(("lora_A", "lora_B"))
        assert (p.grad is not None) == is_adapter, name
    with torch.no_grad():
        y = model(idx)
        for layer in layers:
            layer.merge()
        torch.testing.assert_close(model(idx), y, atol=1e-5, rtol=1e-5)
        for layer in layers:
            layer.unmerge()
        torch.testing.assert_close(model(idx), y, atol=1e-6, rtol=1e-6)
    for k, v in before.items():  # unmerge restores the base weights
        key = k.replace("qkv.", "qkv.base.").replace("proj.", "proj.base.").replace(
            "fc.", "fc.base.")
        torch.testing.assert_close(model.state_dict()[key], v, atol=1e-6, rtol=0)


def test_merge_lora_unwraps_to_the_base_architecture():
    torch.manual_seed(0)
    model = GPT(GPTConfig.tiny(vocab_size=20, block_size=16))
    add_lora(model, r=2, alpha=4)
    _random_B(model)
    sd = lora_state_dict(model)
    assert len(sd) == 2 * len(lora_layers(model))
    assert all(k.endswith(("lora_A", "lora_B")) for k in sd)
    idx = torch.randint(0, 20, (2, 8))
    with torch.no_grad():
        y = model(idx)
    merge_lora(model)
    assert not lora_layers(model)
    fresh = GPT(GPTConfig.tiny(vocab_size=20, block_size=16))
    fresh.load_state_dict(model.state_dict())  # same keys as a plain GPT
    with torch.no_grad():
        torch.testing.assert_close(fresh(idx), y, atol=1e-5, rtol=1e-5)


def test_token_rows_train_only_their_rows_in_embedding_and_tied_head_and_merge_back():
    torch.manual_seed(0)
    cfg = GPTConfig.tiny(vocab_size=20, block_size=16)
    model = GPT(cfg)
    table = model.tok_emb.weight.detach().clone()
    idx = torch.randint(3, 20, (4, 10))
    idx[:, 0], idx[:, 5] = 0, 2  # the new tokens occur in the input
    with torch.no_grad():
        y0 = model(idx)
    train_token_rows(add_lora(model, r=2, alpha=4), [0, 1, 2])
    assert trainable_parameters(model) == sum(
        2 * (lay.in_features + lay.out_features) for lay in lora_layers(model)) + 3 * cfg.n_embd
    with torch.no_grad():
        torch.testing.assert_close(model(idx), y0)  # the copy of the rows starts equal
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    for _ in range(3):
        _, loss = model(idx, idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
    new = model.tok_emb.weight.detach()
    assert torch.equal(new[3:], table[3:])  # every other row is frozen
    assert (new[:3] - table[:3]).abs().amax(dim=1).min() > 1e-3  # each new row moved
    assert torch.equal(model.tok_emb.base.weight, table)  # the frozen table itself is untouched
    h = torch.randn(2, cfg.n_embd)
    torch.testing.assert_close(model.lm_head(h), h @ new.T)  # the tied head reads the new rows
    sd = lora_state_dict(model)
    assert sum(k.endswith("tok_emb.rows") for k in sd) == 1 and sd["tok_emb.rows"].shape == (3, cfg.n_embd)
    with torch.no_grad():
        y = model(idx)
        merge_lora(model)
        assert isinstance(model.tok_emb, nn.Embedding) and model.lm_head.weight is model.tok_emb.weight
        fresh = GPT(cfg)
        fresh.load_state_dict(model.state_dict())
        torch.testing.assert_close(fresh(idx), y, atol=1e-5, rtol=1e-5)


def test_token_rows_bad_input():
    model = GPT(GPTConfig.tiny(vocab_size=20, block_size=16))
    for ids in ([], [0, 0], [20], [-1]):
        with pytest.raises(ValueError, match="distinct integers"):
            train_token_rows(copy.deepcopy(model), ids)
    with pytest.raises(ValueError, match="tok_emb"):
        train_token_rows(train_token_rows(model, [1]), [2])
    with pytest.raises(ValueError, match="tok_emb"):
        train_token_rows(TwoLayer(), [0])


def test_delta_weight_has_rank_at_most_r():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(32, 48), r=3, alpha=3)
    with torch.no_grad():
        layer.lora_B.normal_()
    assert torch.linalg.matrix_rank(layer.delta_weight()) == 3


def test_update_spectrum_and_truncation_of_a_low_rank_update():
    torch.manual_seed(0)
    base = GPT(GPTConfig.tiny(vocab_size=20, block_size=16))
    tuned = copy.deepcopy(base)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a rank-2 update of every fc, a full-rank one of every qkv
        for blk in tuned.blocks:
            d_out, d_in = blk.mlp.fc.weight.shape
            blk.mlp.fc.weight += torch.randn(d_out, 2, generator=g) @ torch.randn(2, d_in, generator=g)
            blk.attn.qkv.weight += 0.01 * torch.randn(blk.attn.qkv.weight.shape, generator=g)
    spec = update_spectrum(base, tuned, targets=("fc", "qkv"))
    assert sorted(spec) == ["blocks.0.attn.qkv", "blocks.0.mlp.fc", "blocks.1.attn.qkv",
                            "blocks.1.mlp.fc"]
    s = spec["blocks.0.mlp.fc"]
    assert (s[2:] < 1e-4 * s[0]).all() and energy_kept(s, 2) == pytest.approx(1.0, abs=1e-8)
    assert energy_kept(spec["blocks.0.attn.qkv"], 2) < 0.2  # a random update is spread out
    approx = truncate_update(base, tuned, r=2, targets=("fc",))
    torch.testing.assert_close(approx.blocks[1].mlp.fc.weight, tuned.blocks[1].mlp.fc.weight,
                               atol=1e-4, rtol=0)
    lora_like = truncate_update(base, tuned, r=2, targets=("fc",), rest="base")
    torch.testing.assert_close(lora_like.blocks[0].mlp.fc.weight, tuned.blocks[0].mlp.fc.weight,
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(lora_like.blocks[0].attn.qkv.weight, base.blocks[0].attn.qkv.weight)
    # Eckart-Young: the rank-r error in Frobenius norm is the root of the tail energy
    approx1 = truncate_update(base, tuned, r=1, targets=("qkv",))
    err = (approx1.blocks[0].attn.qkv.weight - tuned.blocks[0].attn.qkv.weight).norm()
    s = spec["blocks.0.attn.qkv"]
    assert err.item() == pytest.approx(s[1:].square().sum().sqrt().item(), rel=1e-4)
    with pytest.raises(ValueError, match="same architecture"):
        update_spectrum(base, tuned, targets=("q_proj",))


def test_real_section_code_runs_on_a_tiny_hub_model():
    """Chapter 4.6's guarded section: the spectrum of an instruct-minus-base update and the
    implicit DPO reward of the tuned model, on two tiny random Llamas of the same classes."""
    pytest.importorskip("transformers")
    from aigc_course.apps import hub
    from aigc_course.assistant.preference import dpo_loss, response_logprobs
    from aigc_course.assistant.real import encode_hf_pairs

    base, tok = hub.tiny_instruct_lm(seed=0)
    tuned, _ = hub.tiny_instruct_lm(seed=1)
    spec = update_spectrum(base, tuned, targets=("q_proj", "v_proj", "down_proj"))
    assert len(spec) == 3 * base.config.num_hidden_layers
    assert all(0.0 < energy_kept(s, 8) <= 1.0 for s in spec.values())
    batch = encode_hf_pairs(tok, [{"prompt": "2+3=", "chosen": "5", "rejected": "6"}], max_len=64)
    with torch.no_grad():
        lp = {(m, side): response_logprobs(model, batch[f"{side}_ids"], batch[f"{side}_targets"])
              for m, model in (("tuned", tuned), ("base", base)) for side in ("chosen", "rejected")}
    loss, stats = dpo_loss(lp["tuned", "chosen"], lp["tuned", "rejected"],
                           lp["base", "chosen"], lp["base", "rejected"], beta=0.1)
    assert torch.isfinite(loss) and set(stats) >= {"margin", "accuracy"}


def test_bad_input_raises():
    with pytest.raises(ValueError, match="rank r"):
        LoRALinear(nn.Linear(4, 4), r=0, alpha=1)
    with pytest.raises(ValueError, match="exceeds"):
        LoRALinear(nn.Linear(4, 4), r=5, alpha=1)
    with pytest.raises(TypeError, match="nn.Linear"):
        LoRALinear(nn.Conv1d(4, 4, 1), r=1, alpha=1)
    with pytest.raises(ValueError, match="No nn.Linear named"):
        add_lora(TwoLayer(), targets=("q_proj",))
    model = add_lora(TwoLayer(), r=2, targets=("fc",))
    with pytest.raises(ValueError, match="already has LoRA"):
        add_lora(model, r=2, targets=("proj",))
    with pytest.raises(ValueError, match="no LoRA adapters"):
        merge_lora(TwoLayer())
