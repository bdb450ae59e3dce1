"""Decoding strategies (aigc_course.text.decoding) and the decoding playground (static mode)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from aigc_course.models import GPT, GPTConfig  # noqa: E402
from aigc_course.studies.decoding_playground import decoding_playground, next_token_distribution  # noqa: E402
from aigc_course.text import decoding as dec  # noqa: E402
from aigc_course.text.decoding import filter_logits  # noqa: E402
from aigc_course.text.tokenizers import CharTokenizer  # noqa: E402

V = 12


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=V, block_size=8, n_layer=2, n_head=2, n_embd=32)).eval()
    with torch.no_grad():  # sharpen the random model so its choices are far from ties
        model.tok_emb.weight.mul_(8.0)
    return model


def toy(probs):
    """A 'model' whose next-token distribution is always ``probs`` (V,)."""
    logits = probs.log()
    return lambda ids: logits.expand(ids.shape[0], -1).clone()


def test_top_k_keeps_exactly_k_and_matches_filter_logits():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    for k in (1, 5, 50, 80):
        out = dec.top_k_filter(logits, k)
        assert (out > float("-inf")).sum(-1).tolist() == [min(k, 50)] * 3
        torch.testing.assert_close(out, filter_logits(logits, top_k=k))
        kept_min = out.masked_fill(out == float("-inf"), float("inf")).min(-1).values
        assert (kept_min == logits.topk(min(k, 50), -1).values[:, -1]).all()  # the largest ones


def test_top_p_keeps_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.25, 0.15, 0.07, 0.03]])
    logits = probs.log()
    for p, n_kept in ((0.4, 1), (0.5, 1), (0.6, 2), (0.75, 2), (0.76, 3), (0.95, 4), (1.0, 5)):
        out = dec.top_p_filter(logits, p)
        kept = out > float("-inf")
        assert kept.sum().item() == n_kept, p
        assert probs[kept].sum() >= p - 1e-6  # it reaches p ...
        assert probs[0, : n_kept - 1].sum() < p  # ... and one token fewer would not
        torch.testing.assert_close(out, filter_logits(logits, top_p=p))
    shuffled = torch.randperm(5, generator=torch.Generator().manual_seed(1))
    out = dec.top_p_filter(logits[:, shuffled], 0.8)  # order of the vocabulary does not matter
    assert set(shuffled[(out > float("-inf"))[0]].tolist()) == {0, 1, 2}


def test_temperature():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    torch.testing.assert_close(dec.apply_temperature(logits, 2.0), logits / 2)
    zero = dec.apply_temperature(logits, 0.0)
    assert torch.equal(F.softmax(zero, -1), torch.tensor([[1.0, 0.0, 0.0]]))
    cold = F.softmax(dec.apply_temperature(logits, 0.01), -1)
    torch.testing.assert_close(cold, F.softmax(zero, -1))


def test_temperature_zero_and_small_equal_greedy(gpt):
    f = dec.gpt_next_logits(gpt)
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])
    g = dec.greedy(f, prompt, 12)
    assert g.shape == (2, 15)
    assert torch.equal(dec.sample(f, prompt, 12, temperature=0.0), g)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(dec.sample(f, prompt, 12, temperature=1e-4, generator=gen), g)


def test_seeded_sampling_is_deterministic(gpt):
    f = dec.gpt_next_logits(gpt)
    prompt = torch.tensor([0, 1])
    runs = [dec.sample(f, prompt, 20, top_k=6, top_p=0.9, repetition_penalty=1.2,
                       generator=torch.Generator().manual_seed(s)) for s in (3, 3, 4)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_sample_frequencies_match_filtered_probabilities():
    probs = torch.tensor([0.35, 0.25, 0.2, 0.1, 0.06, 0.04])
    f = toy(probs)
    n = 20000
    prompt = torch.zeros(n, 1, dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    draws = dec.sample(f, prompt, 1, temperature=0.7, top_k=4, top_p=0.9, generator=gen)[:, 1]
    freq = torch.bincount(draws, minlength=6).double()
    expected = F.softmax(dec.process_logits(probs.log()[None], prompt[:1], 0.7, 4, 0.9), -1)[0].double()
    assert (freq[expected == 0] == 0).all()  # filtered tokens are never drawn
    kept = expected > 0
    chi2 = ((freq[kept] - n * expected[kept]) ** 2 / (n * expected[kept])).sum().item()
    assert chi2 < 16.3  # 99.9% quantile of chi-square with <= 3 degrees of freedom


def test_beam_size_one_equals_greedy_and_beam_beats_greedy(gpt):
    f = dec.gpt_next_logits(gpt)
    prompt = torch.tensor([[3, 1, 4]])
    g = dec.greedy(f, prompt, 10)
    seqs, logp = dec.beam_search(f, prompt, 10, beam_size=1)
    assert torch.equal(seqs, g)
    torch.testing.assert_close(logp, dec.continuation_logprob(f, g, 3))
    seqs, logp = dec.beam_search(f, prompt, 10, beam_size=5)
    assert seqs.shape == (5, 13) and (logp[:-1] >= logp[1:]).all()  # sorted, best first
    torch.testing.assert_close(logp, dec.continuation_logprob(f, seqs, 3))
    assert logp[0] >= dec.continuation_logprob(f, g, 3)[0] - 1e-5


def test_beam_search_finds_the_best_sequence_greedy_misses():
    # first step: token 0 (p = 0.6) or 1 (0.4); after 0 the next token is uniform, after 1 it is 2
    rows = {0: [1 / 3, 1 / 3, 1 / 3], 1: [0.0, 0.0, 1.0]}

    def f(ids):
        if ids.shape[1] == 1:
            p = torch.tensor([[0.6, 0.4, 0.0]]).expand(len(ids), -1)
        else:
            p = torch.tensor([rows[i] for i in ids[:, -1].tolist()])
        return (p + 1e-12).log()

    prompt = torch.tensor([[2]])
    g = dec.greedy(f, prompt, 2)
    best, logp = dec.beam_search(f, prompt, 2, beam_size=2)
    assert g[0, 1].item() == 0 and best[0, 1:].tolist() == [1, 2]
    # log(0.4) = -0.92 beats greedy's log(0.6) + log(1/3) = -1.61
    assert logp[0].item() == pytest.approx(torch.tensor(0.4).log().item(), abs=1e-6)
    assert logp[0] > dec.continuation_logprob(f, g, 1)[0]


def test_beam_search_eos_and_length_penalty():
    eos = 0
    # the start strongly prefers eos at once; otherwise token 1 forever with probability 0.9

    def f(ids):
        p = torch.tensor([0.05, 0.9, 0.05]).expand(len(ids), -1).clone()
        if ids.shape[1] == 1:
            p = torch.tensor([0.5, 0.45, 0.05]).expand(len(ids), -1).clone()
        return p.log()

    prompt = torch.tensor([2])
    seqs, logp = dec.beam_search(f, prompt, 4, beam_size=3, eos_id=eos, length_penalty=0.0)
    assert seqs[0].tolist() == [2, 0, 0, 0, 0]  # finished early, padded with eos
    seqs, logp = dec.beam_search(f, prompt, 4, beam_size=3, eos_id=eos, length_penalty=2.0)
    assert seqs[0].tolist() == [2, 1, 1, 1, 1]  # a strong length penalty favours the long one


def test_repetition_penalty_lowers_seen_tokens():
    logits = torch.tensor([[2.0, -1.0, 0.5, 1.0]])
    ids = torch.tensor([[0, 1, 1]])
    out = dec.repetition_penalty(logits, ids, 2.0)
    torch.testing.assert_close(out, torch.tensor([[1.0, -2.0, 0.5, 1.0]]))
    p0, p1 = F.softmax(logits, -1), F.softmax(out, -1)
    assert (p1[0, :2] < p0[0, :2]).all() and (p1[0, 2:] > p0[0, 2:]).all()
    assert torch.equal(dec.repetition_penalty(logits, ids, 1.0), logits)


def test_gpt_next_logits_agrees_with_generate(gpt):
    prompt = torch.tensor([[1, 2, 3, 4, 5]])
    ref = gpt.generate(prompt, 15, temperature=0)  # crosses block_size = 8
    assert torch.equal(dec.greedy(dec.gpt_next_logits(gpt), prompt, 15), ref)
    gen_a, gen_b = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    ours = dec.sample(dec.gpt_next_logits(gpt), prompt, 15, temperature=0.8, top_k=5, generator=gen_a)
    assert torch.equal(ours, gpt.generate(prompt, 15, temperature=0.8, top_k=5, generator=gen_b))


def test_decode_config_dispatch(gpt):
    f = dec.gpt_next_logits(gpt)
    prompt = torch.tensor([[1, 2]])
    assert torch.equal(dec.decode(f, prompt, 6, dec.DecodeConfig("greedy")), dec.greedy(f, prompt, 6))
    assert dec.decode(f, prompt, 6, dec.DecodeConfig("beam", beam_size=3)).shape == (1, 8)
    assert dec.decode(f, prompt, 6, dec.DecodeConfig(top_p=0.9), torch.Generator().manual_seed(0)).shape == (1, 8)


def test_distinct_n_and_repetition_rate():
    assert dec.distinct_n(["abab"], 2) == pytest.approx(2 / 3)  # ab, ba, ab
    assert dec.distinct_n([["the", "cat"], ["the", "cat"]], 2) == 0.5
    assert dec.distinct_n(["a"], 2) == 0.0
    assert dec.repetition_rate(["abcdef"], 2) == 0.0
    assert dec.repetition_rate(["aaaaa"], 2) == pytest.approx(3 / 4)
    assert dec.repetition_rate(["abcabcabc", "xyz"], 3) == pytest.approx((4 / 7 + 0) / 2)


@pytest.mark.parametrize("call, match", [
    (lambda: dec.apply_temperature(torch.zeros(1, 3), -0.5), "temperature"),
    (lambda: dec.top_p_filter(torch.zeros(1, 3), 0.0), "top_p"),
    (lambda: dec.top_p_filter(torch.zeros(1, 3), 1.5), "top_p"),
    (lambda: dec.top_k_filter(torch.zeros(1, 3), 0), "top_k"),
    (lambda: dec.repetition_penalty(torch.zeros(1, 3), torch.zeros(1, 2, dtype=torch.long), 0.0), "penalty"),
    (lambda: dec.repetition_penalty(torch.zeros(3), torch.zeros(1, 2, dtype=torch.long), 1.2), r"\(B, V\)"),
    (lambda: dec.beam_search(toy(torch.ones(3) / 3), torch.tensor([0]), 2, beam_size=0), "beam_size"),
    (lambda: dec.beam_search(toy(torch.ones(3) / 3), torch.zeros(2, 1, dtype=torch.long), 2), "one prompt"),
    (lambda: dec.greedy(toy(torch.ones(3) / 3), torch.zeros(1, 1, 1, dtype=torch.long), 2), "prompt"),
    (lambda: dec.greedy(lambda ids: torch.zeros(3), torch.tensor([0]), 2), r"\(B, V\)"),
    (lambda: dec.sample(toy(torch.ones(3) / 3), torch.tensor([0]), 2, temperature=-1), "temperature"),
    (lambda: dec.DecodeConfig("nucleus"), "strategy"),
    (lambda: dec.DecodeConfig(beam_size=0), "beam_size"),
    (lambda: dec.distinct_n("abc", 2), "list of texts"),
])
def test_bad_arguments_raise(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_playground_static(gpt):
    tok = CharTokenizer([chr(ord("a") + i) for i in range(V - 2)] + [" ", "\n"])
    p_raw, p_new = next_token_distribution(dec.gpt_next_logits(gpt), torch.tensor([[0, 1]]),
                                           temperature=1.0, top_k=3, top_p=1.0, repetition_penalty=1.0)
    torch.testing.assert_close(p_raw.sum(), torch.tensor(1.0))
    assert int((p_new > 0).sum()) == 3
    fig = decoding_playground(gpt, tok, prompt="ab", n_new=20, static=True)
    assert len(fig.axes) == 8  # 4 settings x (distribution, continuation)
    plt.close(fig)


def test_playground_widgets(gpt, capsys):
    pytest.importorskip("ipywidgets")
    tok = CharTokenizer([chr(ord("a") + i) for i in range(V - 2)] + [" ", "\n"])
    box = decoding_playground(gpt, tok, prompt="ab", n_new=10, static=False)
    prompt_box, temperature = box.children[:2]
    temperature.value = 0.0  # redraws with greedy decoding
    prompt_box.value = "zz"  # a character outside the vocabulary: a message, no exception
    assert "not in the vocabulary" in capsys.readouterr().out
    plt.close("all")
