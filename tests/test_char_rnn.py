"""The character-level recurrent language model (chapters 3.1 and 5.1) and its recipe."""

import json

import pytest
import torch
from data_marks import needs_data

from aigc_course.models import CharRNN, CharRNNConfig, build_model
from aigc_course.models.char_rnn import streaming_loss

CELLS = ["rnn", "gru", "lstm"]


def small(cell="gru", **kw):
    torch.manual_seed(0)
    return CharRNN(CharRNNConfig(vocab_size=11, n_embd=8, hidden=16, n_layer=2, cell=cell, **kw))


@pytest.mark.parametrize("cell", CELLS)
def test_shapes_and_state(cell):
    model = small(cell)
    idx = torch.randint(0, 11, (3, 7))
    assert model(idx).shape == (3, 7, 11)
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 7, 11) and loss.dim() == 0
    logits, state = model.forward_state(idx)
    parts = state if cell == "lstm" else (state,)
    assert all(p.shape == (2, 3, 16) for p in parts)
    hs, _ = model.hidden_states(idx)
    assert hs.shape == (3, 7, 16)
    init = model.init_state(3)
    assert isinstance(init, tuple) == (cell == "lstm")
    torch.testing.assert_close(model.forward_state(idx, init)[0], logits)  # None means zeros


@pytest.mark.parametrize("cell", CELLS)
def test_gradients_reach_every_parameter(cell):
    model = small(cell)
    idx = torch.randint(0, 11, (2, 5))
    model(idx, idx)[1].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_overfits_one_batch():
    model = small("gru")
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 11, (4, 12), generator=g)
    y = torch.randint(0, 11, (4, 12), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = model(x, y)[1].item()
    for _ in range(100):
        loss = model(x, y)[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert first > 2.0 and loss.item() < 0.2 * first


@pytest.mark.parametrize("cell", CELLS)
def test_stateful_steps_equal_one_pass(cell):
    """Carrying the state token by token gives the logits of reading the whole sequence at once."""
    model = small(cell).eval()
    idx = torch.randint(0, 11, (2, 9))
    full = model(idx)
    logits, state = model.forward_state(idx[:, :4])
    steps = [logits]
    for t in range(4, 9):
        logits, state = model.forward_state(idx[:, t : t + 1], state)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full)


def test_generate_matches_rereading_and_is_deterministic():
    model = small("lstm")
    prompt = torch.randint(0, 11, (2, 3))
    a = model.generate(prompt, 10, generator=torch.Generator().manual_seed(1))
    b = model.generate(prompt, 10, generator=torch.Generator().manual_seed(1))
    assert a.shape == (2, 13) and torch.equal(a, b) and torch.equal(a[:, :3], prompt)
    greedy = model.generate(prompt, 6, temperature=0)
    for t in range(3, 9):  # each greedy token is the arg-max after re-reading everything before it
        assert torch.equal(model(greedy[:, :t])[:, -1].argmax(-1), greedy[:, t])
    top1 = model.generate(prompt, 6, top_k=1, generator=torch.Generator().manual_seed(5))
    assert torch.equal(top1, greedy)
    assert model.generate(prompt, 4, top_p=0.5).shape == (2, 7)


def test_streaming_loss_equals_full_pass():
    model = small("gru").eval()
    ids = torch.randint(0, 11, (41,))
    expected = model(ids[:40].view(4, 10), ids[1:41].view(4, 10))[1].item()
    assert streaming_loss(model, ids, n_streams=4, chunk=3) == pytest.approx(expected, rel=1e-5)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="Unknown cell"):
        CharRNN(CharRNNConfig(cell="transformer"))
    with pytest.raises(ValueError, match="hidden"):
        CharRNN(CharRNNConfig(hidden=0))
    model = small("gru")
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        model(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="targets"):
        model(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="init_state"):
        model.forward_state(torch.zeros(2, 5, dtype=torch.long), torch.zeros(1, 2, 16))
    with pytest.raises(ValueError, match="init_state"):
        small("lstm").forward_state(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 2, 16))
    with pytest.raises(ValueError, match="temperature"):
        model.generate(torch.zeros(1, 2, dtype=torch.long), 3, temperature=-1)
    with pytest.raises(ValueError, match="1-D"):
        streaming_loss(model, torch.zeros(2, 8, dtype=torch.long))


def test_build_from_card_config():
    model = small("lstm")
    rebuilt = build_model("char_rnn", json.loads(json.dumps(model.config_dict())))
    rebuilt.load_state_dict(model.state_dict())
    idx = torch.randint(0, 11, (1, 6))
    torch.testing.assert_close(rebuilt(idx), model(idx))


@needs_data
def test_recipe_fast_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path))
    from aigc_course.pretrained import load_pretrained, load_tokenizer
    from aigc_course.recipes import run

    card = run("char_gru_shakespeare", fast=True)
    model, loaded = load_pretrained("char_gru_shakespeare")  # the cache copy wins over the shipped one
    tok = load_tokenizer("char_gru_shakespeare")
    assert loaded["train_command"].endswith("--fast") and loaded["metrics"] == card["metrics"]
    assert isinstance(model, CharRNN) and tok.vocab_size == model.config.vocab_size == 65
    out = model.generate(tok.encode_tensor("ROMEO:")[None], 5, generator=torch.Generator().manual_seed(0))
    assert tok.decode(out[0]).startswith("ROMEO:") and out.shape == (1, 11)
    with pytest.raises(ValueError, match="recipe"):
        run("char_gru_shakespeare", fast=True, recipe="tpu")
