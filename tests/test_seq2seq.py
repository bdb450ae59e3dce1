"""Tests of the attention encoder-decoder (models/seq2seq.py), the translation data helpers
(translation.py) and the recipe seq2seq_en_zh."""

from __future__ import annotations

import json

import pytest
import torch
from data_marks import needs_data

from aigc_course.models import Seq2Seq, Seq2SeqConfig, build_model
from aigc_course.models.seq2seq import EOS, AdditiveAttention
from aigc_course.text.tokenizers import load_tokenizer_file, save_json
from aigc_course.text.translation import batch_fn, collate, split_pairs, zh_script
from aigc_course.text.vocab import BOS, PAD, UNK, Vocab, tokenize_en, tokenize_zh


def tiny(bidirectional=True, n_layer=1, dropout=0.0, V=12):
    torch.manual_seed(0)
    return Seq2Seq(Seq2SeqConfig(src_vocab=V, tgt_vocab=V, emb=16, hidden=32, n_layer=n_layer,
                                 dropout=dropout, bidirectional=bidirectional))


def toy_batch():
    examples = [([4, 5, 6], [7, 8]), ([5, 9], [9, 9, 10, 4]), ([4], [11])]
    return collate(examples)


# ---------------------------------------------------------------------------- translation.py


def test_tokenizers():
    assert tokenize_en("Don't go, Tom!") == ["don't", "go", ",", "tom", "!"]
    assert tokenize_zh("我 爱你。") == ["我", "爱", "你", "。"]
    assert zh_script("这是我的书。") == "simplified"
    assert zh_script("這是我的書。") == "traditional"
    assert zh_script("你好。") == "unknown"


def test_vocab_roundtrip_and_save(tmp_path):
    v = Vocab.build([["a", "b", "b"], ["b", "c"]], "en", min_freq=1)
    assert v.tokens[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"] and v.tokens[4] == "b"
    ids = v.encode("a b zzz", bos=True, eos=True)
    assert ids[0] == BOS and ids[-1] == EOS and ids[3] == UNK
    assert v.decode(v.encode(["a", "c"]) + [EOS, 4, PAD]) == "a c"  # stops at <eos>
    assert Vocab.build([["a", "b", "b"]], min_freq=2).tokens[4:] == ["b"]
    zh = Vocab.build([list("你好你")], "zh")
    assert zh.decode(zh.encode("好你")) == "好你"
    path = tmp_path / "vocab.json"
    save_json(zh.to_dict(), path)
    loaded = load_tokenizer_file(path)
    assert isinstance(loaded, Vocab) and loaded.tokens == zh.tokens and loaded.lang == "zh"
    with pytest.raises(ValueError, match="special tokens"):
        Vocab(["a", "b"])
    with pytest.raises(ValueError, match="out of range"):
        zh.decode([99])


def test_collate_shapes():
    b = toy_batch()
    assert b["src"].shape == (3, 3) and b["tgt_in"].shape == (3, 5)
    assert b["src_len"].tolist() == [3, 2, 1]
    assert b["tgt_in"][0].tolist() == [BOS, 7, 8, PAD, PAD]
    assert b["tgt_out"][0].tolist() == [7, 8, EOS, PAD, PAD]
    with pytest.raises(ValueError, match="empty"):
        collate([])


def test_batch_fn_deterministic():
    ex = [([i % 7 + 4] * (1 + i % 5), [5]) for i in range(100)]
    a, b = batch_fn(ex, 8, seed=3), batch_fn(ex, 8, seed=3)
    for step in range(15):
        torch.testing.assert_close(a(step)["src"], b(step)["src"])


# ---------------------------------------------------------------------------- the model


def test_attention_rows_and_padding():
    torch.manual_seed(0)
    att = AdditiveAttention(6, 4, 5)
    q, k = torch.randn(2, 6), torch.randn(2, 3, 4)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    ctx, w = att(q, k, mask)
    assert ctx.shape == (2, 4) and w.shape == (2, 3)
    torch.testing.assert_close(w.sum(-1), torch.ones(2))
    assert w[0, 2] == 0
    # the score written out: v^T tanh(W_q q + W_k k_s)
    e = att.v(torch.tanh(att.W_q(q)[:, None] + att.W_k(k))).squeeze(-1).masked_fill(~mask, float("-inf"))
    torch.testing.assert_close(w, e.softmax(-1))
    with pytest.raises(ValueError, match="at least one"):
        att(q, k, torch.zeros(2, 3, dtype=torch.bool))


@pytest.mark.parametrize("bidirectional,n_layer", [(True, 1), (False, 2)])
def test_forward_shapes_attention_and_gradients(bidirectional, n_layer):
    model = tiny(bidirectional, n_layer)
    b = toy_batch()
    logits, attn = model(b["src"], b["src_len"], b["tgt_in"])
    assert logits.shape == (3, 5, 12) and attn.shape == (3, 5, 3)
    torch.testing.assert_close(attn.sum(-1), torch.ones(3, 5))
    assert (attn[1, :, 2] == 0).all() and (attn[2, :, 1:] == 0).all()  # padding gets no weight
    model.loss(b).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_padding_does_not_change_the_result():
    model = tiny().eval()
    src = torch.tensor([[4, 5, 6]])
    tgt = torch.tensor([[BOS, 7, 8]])
    padded = torch.tensor([[4, 5, 6, PAD, PAD]])
    a, _ = model(src, None, tgt)
    b, _ = model(padded, torch.tensor([3]), tgt)
    torch.testing.assert_close(a, b)


def test_bad_inputs():
    model = tiny()
    with pytest.raises(ValueError, match="src ids"):
        model(torch.tensor([[99]]), None, torch.tensor([[BOS]]))
    with pytest.raises(ValueError, match="src_len"):
        model(torch.tensor([[4, 5]]), torch.tensor([3]), torch.tensor([[BOS]]))
    with pytest.raises(ValueError, match="tgt_in"):
        model(torch.tensor([[4, 5]]), None, torch.tensor([BOS]))
    with pytest.raises(ValueError, match="even hidden"):
        Seq2Seq(Seq2SeqConfig(hidden=33, bidirectional=True))
    with pytest.raises(ValueError, match="beam_size"):
        model.beam_search(torch.tensor([[4]]), beam_size=0)


def test_build_model_and_determinism():
    cfg = dict(src_vocab=12, tgt_vocab=10, emb=8, hidden=16, n_layer=1, dropout=0.0, bidirectional=True)
    torch.manual_seed(1)
    m1 = build_model("seq2seq", cfg)
    torch.manual_seed(1)
    m2 = build_model("seq2seq", cfg)
    assert isinstance(m1, Seq2Seq) and m1.config_dict() == {**cfg, "attention": True}
    b = toy_batch()
    b["tgt_in"] = b["tgt_in"].clamp(max=9)
    torch.testing.assert_close(m1(b["src"], b["src_len"], b["tgt_in"])[0], m2(b["src"], b["src_len"], b["tgt_in"])[0])


def reverse_data(n=64, seed=0):
    """Random digit strings (ids 4..11) and their reversal: a task that needs attention."""
    g = torch.Generator().manual_seed(seed)
    ex = []
    for _ in range(n):
        s = (torch.randint(4, 12, (int(torch.randint(2, 6, (1,), generator=g)),), generator=g)).tolist()
        ex.append((s, s[::-1]))
    return ex


def test_overfits_reversal_and_decoders_agree():
    torch.manual_seed(0)
    ex = reverse_data(16)
    model = tiny()
    batch = collate(ex)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    model.eval()
    tokens, attn = model.greedy_decode(batch["src"], batch["src_len"], max_len=8)
    for i, (_s, t) in enumerate(ex):
        assert tokens[i, : len(t) + 1].tolist() == t + [EOS]
    assert attn.shape[:2] == tokens.shape and attn.shape[2] == batch["src"].shape[1]
    beam1, attn1, _ = model.beam_search(batch["src"], batch["src_len"], beam_size=1, max_len=8)
    torch.testing.assert_close(beam1, tokens)
    torch.testing.assert_close(attn1, attn)


def sequence_logprob(model, src, tokens):
    """log p(tokens | src) under teacher forcing (tokens end with <eos>)."""
    tgt_in = torch.tensor([[BOS] + tokens[:-1]])
    logits, _ = model(src, None, tgt_in)
    return logits.log_softmax(-1)[0, torch.arange(len(tokens)), torch.tensor(tokens)].sum().item()


def test_beam_search_log_prob_at_least_greedy():
    """With no length penalty beam search maximises log p(y | x) over more candidates than greedy."""
    model = tiny(V=8).eval()  # an untrained model: flat, ambiguous distributions
    gains = []
    for seed in range(5):
        src = torch.randint(3, 8, (1, 4), generator=torch.Generator().manual_seed(seed))
        g, _ = model.greedy_decode(src, max_len=6)
        b, _, score = model.beam_search(src, beam_size=5, max_len=6, length_penalty=0.0)
        lp_g = sequence_logprob(model, src, g[0][g[0] != PAD].tolist())
        lp_b = sequence_logprob(model, src, b[0][b[0] != PAD].tolist())
        assert score.item() == pytest.approx(lp_b, abs=1e-4)
        gains.append(lp_b - lp_g)
    assert min(gains) >= -1e-4 and max(gains) > 0.1


# ---------------------------------------------------------------------------- data and recipe


@needs_data
def test_split_is_deterministic_and_clean():
    from aigc_course.data import load_en_zh

    pairs = load_en_zh()
    a = split_pairs(pairs, n_test=200, n_val=100, seed=0, max_en_words=10, simplified_only=True)
    b = split_pairs(pairs, n_test=200, n_val=100, seed=0, max_en_words=10, simplified_only=True)
    assert [p.en for p in a.test] == [p.en for p in b.test]
    train_en = {p.en.lower() for p in a.train}
    assert not any(p.en.lower() in train_en for p in a.test + a.val)
    assert len(a.test) + len(a.val) + a.removed_duplicates == 300
    assert all(len(tokenize_en(p.en)) <= 10 for p in a.train)


@needs_data
def test_recipe_fast(tmp_path):
    from aigc_course.recipes.seq2seq_en_zh import train

    card = train(out_dir=tmp_path, fast=True)
    assert {"test_loss", "bleu_greedy", "bleu_beam4"} <= set(card["metrics"])
    saved = json.loads((tmp_path / "seq2seq_en_zh.json").read_text(encoding="utf-8"))
    model = build_model(saved["arch"], saved["config"])
    src = load_tokenizer_file(tmp_path / "seq2seq_en_zh.src.tokenizer.json")
    tgt = load_tokenizer_file(tmp_path / "seq2seq_en_zh.tgt.tokenizer.json")
    assert (src.lang, tgt.lang) == ("en", "zh")
    assert model.config.src_vocab == src.vocab_size and model.config.tgt_vocab == tgt.vocab_size


def test_no_attention_baseline():
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(src_vocab=12, tgt_vocab=12, emb=8, hidden=16, attention=False))
    b = toy_batch()
    logits, attn = model(b["src"], b["src_len"], b["tgt_in"])
    assert logits.shape == (3, 5, 12) and (attn == 0).all()
    model.loss(b).backward()
    tokens, _, _ = model.eval().beam_search(b["src"], b["src_len"], beam_size=2, max_len=4)
    assert tokens.shape[0] == 3
