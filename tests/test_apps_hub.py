"""The tiny stand-in of the Part 6 "real thing" sections (aigc_course.apps.hub)."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from aigc_course.apps import hub  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    return hub.tiny_instruct_lm(seed=0)


def test_tiny_model_is_the_library_class_with_a_chat_template(tiny):
    from transformers import LlamaForCausalLM

    model, tok = tiny
    assert isinstance(model, LlamaForCausalLM)
    assert model.config.vocab_size == len(tok) == 256 + 3
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_byte_level_tokenizer_round_trips_any_text(tiny):
    _, tok = tiny
    for s in ["Héllo, world!", "床前明月光", "tabs\tand\nlines"]:
        ids = tok(s)["input_ids"]
        assert len(ids) == len(s.encode("utf-8"))  # one token per byte: no merges
        assert tok.decode(ids) == s


def test_chat_is_seeded_and_returns_only_the_reply(tiny):
    model, tok = tiny
    a = hub.chat(model, tok, "Describe a red coat.", max_new_tokens=8, num_return_sequences=3, seed=1)
    b = hub.chat(model, tok, [{"role": "user", "content": "Describe a red coat."}], max_new_tokens=8,
                 num_return_sequences=3, seed=1)
    assert a == b and len(a) == 3
    assert all("<|im_start|>" not in r and "Describe" not in r for r in a)
    greedy = hub.chat(model, tok, "x", max_new_tokens=6, temperature=0, num_return_sequences=2)
    assert greedy[0] == greedy[1]  # greedy decoding has one answer


def test_chat_rejects_bad_messages(tiny):
    model, tok = tiny
    with pytest.raises(TypeError, match="role"):
        hub.chat(model, tok, [{"text": "hi"}])
    with pytest.raises(ValueError, match="max_new_tokens"):
        hub.chat(model, tok, "hi", max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        hub.chat(model, tok, "hi", temperature=-1)


def test_real_models_are_skipped_without_a_gpu_or_in_fast_mode(monkeypatch):
    monkeypatch.setenv("AIGC_FAST", "1")
    assert hub.real_models_unavailable("cuda") == "fast mode (AIGC_FAST=1)"
    monkeypatch.setenv("AIGC_FAST", "0")
    if not torch.cuda.is_available():
        assert hub.real_models_unavailable("cuda") == "no CUDA GPU"
    assert hub.real_models_unavailable("cpu") == "no CUDA GPU"
