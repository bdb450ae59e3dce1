"""Chapter 5.14: int8 quantisation, the chat box and the guarded real-thing code (LoRA + DPO)."""

import copy
import math

import pytest
import torch
from torch import nn

from aigc_course.assistant.quantize import (
    QMAX,
    Int8Embedding,
    Int8Linear,
    dequantize,
    model_bytes,
    quantization_error,
    quantize_int8,
    quantize_per_channel,
)
from aigc_course.models import GPT, GPTConfig
from aigc_course.widgets import chat_box


@pytest.fixture
def gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig.tiny(vocab_size=50, block_size=24)).eval()


# ---------------------------------------------------------------- quantisation
def test_per_channel_round_trip_is_within_half_a_step():
    torch.manual_seed(0)
    w = torch.randn(16, 40) * torch.logspace(-3, 1, 16)[:, None]  # rows of very different ranges
    q, scale = quantize_per_channel(w)
    assert q.dtype == torch.int8 and scale.shape == (16,)
    assert q.abs().max().item() == QMAX  # the largest weight of each row maps to +-127
    assert (q.abs().amax(dim=1) == QMAX).all()
    err = (w - dequantize(q, scale)).abs()
    assert (err <= scale[:, None] / 2 * (1 + 1e-5)).all()
    torch.testing.assert_close(scale, w.abs().amax(dim=1) / QMAX)


def test_zero_row_and_bad_input():
    w = torch.zeros(3, 4)
    w[1] = torch.tensor([1.0, -2.0, 0.5, 0.0])
    q, scale = quantize_per_channel(w)
    assert (q[0] == 0).all() and (q[2] == 0).all() and torch.isfinite(scale).all()
    with pytest.raises(ValueError, match="2-D"):
        quantize_per_channel(torch.randn(3))
    with pytest.raises(ValueError, match="floating-point"):
        quantize_per_channel(torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="inf or NaN"):
        quantize_per_channel(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(TypeError, match="nn.Module"):
        quantize_int8("not a model")
    with pytest.raises(ValueError, match="no nn.Linear"):
        quantize_int8(nn.Sequential(nn.ReLU()))
    with pytest.raises(TypeError, match="nn.Linear"):
        Int8Linear.from_linear(nn.Conv1d(2, 2, 1))


def test_int8_linear_matches_dequantised_float_layer():
    torch.manual_seed(1)
    lin = nn.Linear(12, 7)
    qlin = Int8Linear.from_linear(lin)
    x = torch.randn(5, 12)
    ref = x @ qlin.dequantized_weight().T + lin.bias
    torch.testing.assert_close(qlin(x), ref)
    assert (qlin(x) - lin(x)).abs().max() < 0.05  # close to the float layer too


def test_quantised_gpt_is_close_smaller_and_keeps_the_tie(gpt):
    qgpt = quantize_int8(gpt)
    assert isinstance(gpt.lm_head, nn.Linear)  # the original is untouched
    assert isinstance(qgpt.lm_head, Int8Linear) and isinstance(qgpt.tok_emb, Int8Embedding)
    assert qgpt.tok_emb.head[0] is qgpt.lm_head  # one int8 matrix serves embedding and head
    idx = torch.randint(0, 50, (3, 24))
    logits, qlogits = gpt(idx), qgpt(idx)
    assert (logits - qlogits).abs().max() < 0.05 * logits.abs().max()
    assert (logits.argmax(-1) == qlogits.argmax(-1)).float().mean() > 0.9
    # embedding rows are the dequantised rows of the head's codes
    torch.testing.assert_close(qgpt.tok_emb(idx), qgpt.lm_head.dequantized_weight()[idx])
    errs = quantization_error(gpt, qgpt)
    assert len(errs) == 2 * 4 + 1 and max(errs.values()) <= 1 + 1e-4
    # linears: 1 byte instead of 4 per weight (+ a scale per row): close to 4x
    lin_f = sum(m.weight.numel() * 4 for m in gpt.modules() if isinstance(m, nn.Linear))
    lin_q = sum(m.q.numel() + m.scale.numel() * 4 for m in qgpt.modules() if isinstance(m, Int8Linear))
    assert 3.5 < lin_f / lin_q <= 4.0
    assert 2.5 < model_bytes(gpt) / model_bytes(qgpt) < 4.0


def test_quantised_gpt_generates_and_skip_keeps_float(gpt):
    qgpt = quantize_int8(gpt, skip=("lm_head",))
    assert isinstance(qgpt.lm_head, nn.Linear) and isinstance(qgpt.tok_emb, nn.Embedding)
    assert qgpt.lm_head.weight is qgpt.tok_emb.weight
    out = quantize_int8(gpt).generate(torch.zeros(2, 3, dtype=torch.long), 5, temperature=0.0)
    assert out.shape == (2, 8)


def test_model_bytes_counts_shared_tensors_once(gpt):
    n = sum(p.numel() for p in gpt.parameters()) * 4  # parameters() already yields the tie once
    assert model_bytes(gpt) == n
    with pytest.raises(TypeError):
        model_bytes(3)


# ---------------------------------------------------------------- the chat box
def _respond(history):
    return f"{len(history)}:{history[-1]['content'][::-1]}"


def test_chat_box_static_transcript(capsys):
    history = chat_box(_respond, ["abc", "hello"], static=True, title="demo")
    assert [m["role"] for m in history] == ["user", "assistant"] * 2
    assert history[1]["content"] == "1:cba" and history[3]["content"] == "3:olleh"
    out = capsys.readouterr().out
    assert "demo" in out and "assistant > 3:olleh" in out


def test_chat_box_widget_sends_and_clears():
    pytest.importorskip("ipywidgets")
    box = chat_box(_respond, ["x"], static=False)
    box.text.value = "  yz "
    box.send_button.click()
    assert box.history[-1] == {"role": "assistant", "content": "3:zy"}
    box.text.value = "   "
    box.send_button.click()  # blank input sends nothing
    assert len(box.history) == 4


def test_chat_box_bad_input(monkeypatch):
    monkeypatch.setenv("AIGC_BOOK", "1")
    with pytest.raises(TypeError, match="respond"):
        chat_box("not callable")
    with pytest.raises(TypeError, match="list of user messages"):
        chat_box(_respond, "one string")
    with pytest.raises(TypeError, match="must return a str"):
        chat_box(lambda h: 3, ["hi"])
    assert len(chat_box(_respond, ["hi"])) == 2  # AIGC_BOOK=1: static by default


# ---------------------------------------------------------------- the real thing on a tiny model
@pytest.fixture
def tiny_lm(monkeypatch):
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from aigc_course.apps.hub import tiny_instruct_lm

    return tiny_instruct_lm(seed=0)


PAIRS = [{"prompt": "What is 2 + 3?", "chosen": "5", "rejected": "It is six, I think."},
         {"prompt": "Reverse the word abc.", "chosen": "cba", "rejected": "abc"},
         {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."}]


def test_encode_hf_pairs_scores_only_the_response(tiny_lm):
    from aigc_course.assistant.real import encode_hf_pairs

    _, tok = tiny_lm
    batch = encode_hf_pairs(tok, PAIRS)
    for side in ("chosen", "rejected"):
        ids, tgt = batch[f"{side}_ids"], batch[f"{side}_targets"]
        assert ids.shape == tgt.shape
        for row, p in enumerate(PAIRS):
            scored = tgt[row][tgt[row] != -100].tolist()
            expected = tok(p[side], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            assert scored == expected  # the response and its end-of-turn token, nothing else
            first = (tgt[row] != -100).nonzero()[0].item()
            assert ids[row, first + 1] == tgt[row, first]  # next-token layout
    with pytest.raises(ValueError, match="prompt"):
        encode_hf_pairs(tok, [{"prompt": "x", "chosen": "y"}])
    with pytest.raises(ValueError, match="max_len"):
        encode_hf_pairs(tok, PAIRS, max_len=4)


def test_lora_dpo_on_a_tiny_llama(tiny_lm):
    from aigc_course.assistant.real import lora_dpo

    model, tok = tiny_lm
    before = {k: v.clone() for k, v in model.state_dict().items()}
    peft_model, hist = lora_dpo(model, tok, PAIRS, steps=6, batch_size=3, lr=1e-2, r=4)
    assert math.isclose(hist["loss"][0], math.log(2), abs_tol=1e-5)  # pi = pi_ref at step 0
    assert hist["loss"][-1] < hist["loss"][0] and hist["reward_margin"][-1] > 0
    assert 0 < hist["trainable_params"] < hist["total_params"] / 5
    after = peft_model.get_base_model().state_dict()
    for k, v in before.items():  # the base weights are frozen; only the adapters moved
        key = k if k in after else k.replace(".weight", ".base_layer.weight")
        torch.testing.assert_close(after[key], v)
    with pytest.raises(TypeError, match="Unknown RealDPOConfig"):
        lora_dpo(model, tok, PAIRS, step=3)


def test_real_section_skips_here():
    from aigc_course.apps.hub import real_models_unavailable

    assert real_models_unavailable("cpu") is not None


# ---------------------------------------------------------------- the recipe assistant_tuned
def test_assistant_tuned_recipe_runs_in_fast_mode(tmp_path, monkeypatch):
    """Fast mode into a temporary cache (never ~/.cache/aigc_course/weights), then load every stage."""
    pytest.importorskip("sklearn")
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path))
    from aigc_course.assistant.lora import LoRALinear, TrainableTokens
    from aigc_course.assistant.preference import GPTRewardModel
    from aigc_course.recipes import assistant_tuned as recipe

    card = recipe.train(fast=True)
    assert (tmp_path / "weights" / "assistant_tuned.safetensors").is_file()
    assert card["train_command"] == "python -m aigc_course.train assistant_tuned --fast"
    assert set(card["metrics"]["success"]) == {"base", "sft", "lora_sft", "dpo", "rlhf"}
    assert card["metrics"]["win_checker"]["sft"] == 0.5 and "sft" not in card["metrics"]["kl_to_sft"]
    for kind in recipe.KINDS:
        model = recipe.load(kind)
        assert any(isinstance(m, LoRALinear) for m in model.modules())
        assert not any(p.requires_grad for p in model.parameters())
        if kind == "reward":
            assert isinstance(model, GPTRewardModel)
        else:
            if kind == "lora_sft":  # the role tokens' rows were trained and saved with the adapters
                assert isinstance(model.tok_emb, TrainableTokens) and card["config"]["token_rows"] == [0, 1, 2]
                emb = model.tok_emb
                assert not torch.equal(emb.rows, emb.base.weight[emb.ids])
            out = model.generate(torch.zeros(1, 2, dtype=torch.long), 3, temperature=0.0)
            assert out.shape == (1, 5)
    with pytest.raises(ValueError, match="Unknown stage"):
        recipe.load("ppo")


def test_real_section_runs_on_the_tiny_llama(tiny_lm):
    """The chapter's guarded section, end to end, on a random Llama of the same classes."""
    pytest.importorskip("sklearn")
    from aigc_course.assistant.real import real_section, success_rate
    from aigc_course.assistant.tasks import make_examples

    model, tok = tiny_lm
    out = real_section(model, tok, n_pairs=6, n_test=4, max_new_tokens=4, steps=2, batch_size=2)
    assert out["pairs"] == 6  # gibberish never equals the reference: no ties
    assert set(out["before"]) == set(out["after"]) and 0 <= out["after"]["all"] <= 1
    assert len(out["history"]["loss"]) == 2 and len(out["examples"]) == 3
    with pytest.raises(ValueError, match="at least one"):
        success_rate(out["model"], tok, [])
    assert make_examples("test", 4, tasks=("arith", "string"), phrasing="heldout")  # the data exist


def test_win_rate_and_sampled_kl_of_a_model_to_itself(gpt):
    from aigc_course.assistant.chat import ChatTokenizer
    from aigc_course.recipes.assistant_tuned import sampled_kl, win_rate

    assert win_rate([1.0, 0.0, 0.5], [0.0, 0.0, 1.0]) == pytest.approx(0.5)  # win, tie (half), loss
    tok = ChatTokenizer([chr(i) for i in range(97, 123)] + ["□"])
    model = GPT(GPTConfig.tiny(vocab_size=tok.vocab_size, block_size=24)).eval()
    g = torch.Generator().manual_seed(0)
    assert sampled_kl(model, copy.deepcopy(model), tok, ["abc", "de"], samples=3, max_new_tokens=5,
                      generator=g) == pytest.approx(0.0, abs=1e-5)
    other = GPT(GPTConfig.tiny(vocab_size=tok.vocab_size, block_size=24)).eval()
    assert sampled_kl(model, other, tok, ["abc"], samples=8, max_new_tokens=5, generator=g) > 0
