"""The GPT's KV cache (chapter 3.9): cached logits and generations equal full recomputation."""

import pytest
import torch

from aigc_course.models import GPT, GPTConfig
from aigc_course.models.gpt import causal_mask
from aigc_course.runtime import set_seed


def tiny_gpt(block_size: int = 16, seed: int = 0) -> GPT:
    set_seed(seed)
    return GPT(GPTConfig(vocab_size=11, block_size=block_size, n_layer=2, n_head=2, n_embd=16)).eval()


def test_causal_mask_is_shifted_by_the_cache():
    m = causal_mask(2, past=3)
    assert m.shape == (2, 5)
    assert m.tolist() == [[True, True, True, True, False], [True] * 5]
    assert torch.equal(causal_mask(4), torch.ones(4, 4, dtype=torch.bool).tril())


@pytest.mark.parametrize("prompt_len", [1, 3, 7])
def test_cached_logits_equal_recomputation_token_by_token(prompt_len):
    model = tiny_gpt()
    idx = torch.randint(0, 11, (2, 12), generator=torch.Generator().manual_seed(prompt_len))
    full = model(idx)  # (B, T, V)
    logits, past = model(idx[:, :prompt_len], use_cache=True)
    pieces = [logits]
    for t in range(prompt_len, idx.shape[1]):
        logits, past = model(idx[:, t : t + 1], past_kv=past, use_cache=True)
        pieces.append(logits)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)
    assert len(past) == 2 and past[0][0].shape == (2, 2, 12, 8)


@pytest.mark.parametrize("chunks", [(4, 4, 4), (5, 1, 6), (1, 10, 1)])
def test_chunked_prefill_equals_recomputation(chunks):
    model = tiny_gpt()
    idx = torch.randint(0, 11, (3, sum(chunks)), generator=torch.Generator().manual_seed(1))
    full, loss_full = model(idx, idx)
    past, pieces, start = None, [], 0
    for n in chunks:  # several new tokens at once after a cache: the causal mask must shift
        logits, past = model(idx[:, start : start + n], past_kv=past, use_cache=True)
        pieces.append(logits)
        start += n
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-5, atol=1e-5)
    logits, loss, present = model(idx, idx, use_cache=True)  # targets and cache together
    torch.testing.assert_close(loss, loss_full)
    assert present[1][1].shape[2] == idx.shape[1]


def test_cache_with_a_boolean_mask_equals_the_masked_full_pass():
    model = tiny_gpt()
    idx = torch.randint(0, 11, (2, 8), generator=torch.Generator().manual_seed(2))
    keep = torch.ones(2, 1, 1, 8, dtype=torch.bool)
    keep[0, ..., 1] = False  # hide one key of the first sequence
    full = model(idx, attn_mask=keep)
    first, past = model(idx[:, :5], attn_mask=keep[..., :5], use_cache=True)
    second, _ = model(idx[:, 5:], attn_mask=keep, past_kv=past, use_cache=True)
    torch.testing.assert_close(torch.cat([first, second], 1)[:, 1:], full[:, 1:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("temperature,top_k", [(0.0, None), (1.0, None), (0.8, 5)])
@pytest.mark.parametrize("batch", [1, 3])
def test_generate_with_and_without_cache_identical(temperature, top_k, batch):
    model = tiny_gpt(block_size=16)
    idx = torch.randint(0, 11, (batch, 4), generator=torch.Generator().manual_seed(3))
    outs = []
    for use_cache in (True, False):
        g = torch.Generator().manual_seed(7)
        # 4 + 20 tokens: crosses block_size = 16, where the cache falls back to the sliding window
        outs.append(model.generate(idx, 20, temperature=temperature, top_k=top_k, generator=g,
                                   use_cache=use_cache))
    assert outs[0].shape == (batch, 24)
    assert torch.equal(outs[0], outs[1])


def test_generate_prompt_longer_than_block_size_and_training_mode_restored():
    model = tiny_gpt(block_size=8).train()
    idx = torch.randint(0, 11, (2, 12), generator=torch.Generator().manual_seed(4))
    a = model.generate(idx, 5, temperature=0, use_cache=True)
    b = model.generate(idx, 5, temperature=0, use_cache=False)
    assert torch.equal(a, b) and model.training


def test_bad_past_kv_raises_clear_errors():
    model = tiny_gpt(block_size=8)
    idx = torch.randint(0, 11, (2, 3))
    _, past = model(idx, use_cache=True)
    with pytest.raises(ValueError, match="n_layer=2"):
        model(idx[:, :1], past_kv=past[:1])  # one layer missing
    with pytest.raises(ValueError, match="B=1"):
        model(idx[:1, :1], past_kv=past)  # batch size differs from the cache's
    bad = tuple((k[:, :1], v[:, :1]) for k, v in past)  # wrong number of heads
    with pytest.raises(ValueError, match="n_head=2"):
        model(idx[:, :1], past_kv=bad)
    uneven = (past[0], (past[1][0][:, :, :2], past[1][1][:, :, :2]))
    with pytest.raises(ValueError, match="same P"):
        model(idx[:, :1], past_kv=uneven)
    with pytest.raises(ValueError, match="not a pair"):
        model(idx[:, :1], past_kv=(past[0][0], past[1][0]))
    with pytest.raises(ValueError, match="after 3 cached tokens exceeds block_size 8"):
        model(torch.zeros(2, 6, dtype=torch.long), past_kv=past)


def test_guarded_real_section_runs_on_the_tiny_hub_model():
    """The code of chapter 3.9's guarded section: the library's cache gives the same greedy tokens."""
    pytest.importorskip("transformers")
    from aigc_course.apps import hub

    llm, llm_tok = hub.tiny_instruct_lm(seed=0)
    text = llm_tok.apply_chat_template([{"role": "user", "content": "Write a long story about a red coat."}],
                                       add_generation_prompt=True, tokenize=False)
    ids = llm_tok(text, return_tensors="pt")["input_ids"]
    outs = {}
    for use_cache in (True, False):
        with torch.no_grad():
            outs[use_cache] = llm.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                           max_new_tokens=16, min_new_tokens=16, use_cache=use_cache,
                                           pad_token_id=llm_tok.pad_token_id)
    assert outs[True].shape == (1, ids.shape[1] + 16)
    assert torch.equal(outs[True], outs[False])
    assert isinstance(hub.chat(llm, llm_tok, "What is 37 plus 45?", max_new_tokens=8, temperature=0)[0], str)
