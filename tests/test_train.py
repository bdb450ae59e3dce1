"""The training loop, checkpoints and resuming after an interruption."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from aigc_course import set_seed
from aigc_course.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from aigc_course.models import MLP, MLPConfig
from aigc_course.train import History, TrainConfig, accuracy, evaluate, fit, lr_at


def _problem(seed=0, n=256):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    y = (x[:, 0] * x[:, 1] > 0).long()  # XOR-like: needs a hidden layer
    return x, y


def _loss(model, batch):
    x, y = batch
    return F.cross_entropy(model(x), y)


def _batches(x, y, bs=32, seed=0):
    g = torch.Generator().manual_seed(seed)

    def get(step):
        idx = torch.randint(0, len(x), (bs,), generator=g)
        return x[idx], y[idx]

    return get


def test_fit_learns_and_records_history():
    set_seed(0)
    x, y = _problem()
    model = MLP(MLPConfig.toy(2, 2, 32))
    hist = fit(model, _loss, _batches(x, y), TrainConfig(steps=300, lr=1e-2, eval_every=100),
               eval_fn=lambda m: {"acc": accuracy(m, x, y)})
    assert len(hist.loss) == 300 and hist.steps == list(range(300))
    assert [e["step"] for e in hist.evals] == [100, 200, 300]
    assert hist.evals[-1]["acc"] > 0.9
    assert sum(hist.loss[-20:]) / 20 < 0.5 * sum(hist.loss[:20]) / 20
    assert hist.seconds > 0 and not model.training


def test_fit_equals_hand_written_loop():
    """With SGD and no clipping, fit does exactly forward, loss, zero_grad, backward, step."""
    x, y = _problem()
    set_seed(1)
    a = MLP(MLPConfig.toy(2, 2, 16))
    b = MLP(MLPConfig.toy(2, 2, 16))
    b.load_state_dict(a.state_dict())
    opt = torch.optim.SGD(a.parameters(), lr=0.1)
    for step in range(20):
        xb, yb = x[step * 8 : step * 8 + 8], y[step * 8 : step * 8 + 8]
        loss = F.cross_entropy(a(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    data = [(x[i * 8 : i * 8 + 8], y[i * 8 : i * 8 + 8]) for i in range(20)]
    fit(b, _loss, data, TrainConfig(steps=20, lr=0.1, grad_clip=None),
        optimizer=torch.optim.SGD(b.parameters(), lr=0.1))
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)


def test_fit_is_deterministic_under_a_seed():
    x, y = _problem()
    losses = []
    for _ in range(2):
        set_seed(7)
        model = MLP(MLPConfig.toy(2, 2, 16))
        losses.append(fit(model, _loss, _batches(x, y), TrainConfig(steps=50)).loss)
    assert losses[0] == losses[1]


def test_resume_after_interrupt_matches_uninterrupted_run(tmp_path):
    x, y = _problem()
    cfg = dict(steps=60, lr=5e-3, ckpt_every=20)

    set_seed(3)
    ref = MLP(MLPConfig.toy(2, 2, 16))
    init = {k: v.clone() for k, v in ref.state_dict().items()}
    full = fit(ref, _loss, [(x[:64], y[:64])], TrainConfig(**cfg))

    class Interrupt(Exception):
        pass

    calls = {"n": 0}

    def flaky_loss(model, batch):
        calls["n"] += 1
        if calls["n"] == 45:  # dies after the checkpoint at step 40
            raise Interrupt
        return _loss(model, batch)

    ckpt = tmp_path / "run.safetensors"
    model = MLP(MLPConfig.toy(2, 2, 16))
    model.load_state_dict(init)
    with pytest.raises(Interrupt):
        fit(model, flaky_loss, [(x[:64], y[:64])], TrainConfig(**cfg, ckpt_path=ckpt))
    assert load_checkpoint(ckpt, MLP(MLPConfig.toy(2, 2, 16)))["step"] == 40

    resumed_model = MLP(MLPConfig.toy(2, 2, 16))  # fresh weights: all state comes from the file
    resumed = fit(resumed_model, _loss, [(x[:64], y[:64])], TrainConfig(**cfg, ckpt_path=ckpt))
    assert resumed.steps == list(range(60))
    torch.testing.assert_close(torch.tensor(resumed.loss), torch.tensor(full.loss))
    for pa, pb in zip(ref.parameters(), resumed_model.parameters()):
        torch.testing.assert_close(pa, pb)


def test_checkpoint_round_trip_and_errors(tmp_path):
    model = MLP(MLPConfig.toy(2, 3, 8))
    opt = torch.optim.AdamW(model.parameters())
    fit(model, lambda m, b: m(b).pow(2).mean(), [torch.randn(4, 2)], TrainConfig(steps=3), optimizer=opt)
    path = save_checkpoint(tmp_path / "c.safetensors", model, opt, step=3, note="hi")
    other = MLP(MLPConfig.toy(2, 3, 8))
    opt2 = torch.optim.AdamW(other.parameters())
    state = load_checkpoint(path, other, opt2)
    assert state == {"step": 3, "note": "hi"}
    torch.testing.assert_close(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])

    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(path, MLP(MLPConfig.toy(2, 5, 8)))
    with pytest.raises(CheckpointError, match="No checkpoint"):
        load_checkpoint(tmp_path / "missing.safetensors", other)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(corrupt, other)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors", "corrupt.safetensors"]


def test_nan_loss_raises_clear_error():
    model = MLP(MLPConfig.toy(2, 2, 8))
    with pytest.raises(FloatingPointError, match="learning rate"):
        fit(model, lambda m, b: m(b).sum() * float("nan"), [torch.randn(4, 2)], TrainConfig(steps=2))


def test_empty_data_raises():
    with pytest.raises(ValueError, match="no batch"):
        fit(MLP(MLPConfig.toy()), _loss, [], TrainConfig(steps=2))


def test_lr_schedule():
    cfg = TrainConfig(steps=100, lr=1.0, warmup=10, decay=True, lr_min=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(100, cfg) == pytest.approx(0.1)
    assert lr_at(50, TrainConfig(lr=0.5)) == 0.5


def test_evaluate_and_history_helpers():
    x, y = _problem()
    model = MLP(MLPConfig.toy(2, 2, 8))
    val = evaluate(model, _loss, [(x[:32], y[:32]), (x[32:64], y[32:64])])
    assert 0.3 < val < 1.5
    h = History(steps=[0, 1, 2], loss=[3.0, 1.0, 2.0])
    assert h.smoothed(2) == [3.0, 2.0, 1.5]
    assert History.from_dict(h.to_dict()) == h


def test_resume_continues_the_stream_of_text_windows_exactly(tmp_path):
    """batch_fn's windows are part of the checkpoint: a GPT resumed from step 6 of 12 ends with
    the same weights as one trained in one go (a fresh generator would draw other windows)."""
    from aigc_course.models import GPT, GPTConfig
    from aigc_course.text.batches import batch_fn

    data = torch.randint(0, 11, (400,), generator=torch.Generator().manual_seed(0))
    cfg = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16)

    def loss(m, b):
        return m(*b)[1]

    def run(steps, ckpt=None):
        torch.manual_seed(0)
        model = GPT(cfg)
        fit(model, loss, batch_fn(data, 8, 4, seed=1),
            TrainConfig(steps=steps, lr=1e-2, ckpt_path=ckpt, progress=False))
        return model

    whole = run(12)
    ckpt = tmp_path / "lm.safetensors"
    run(6, ckpt)  # stops at step 6 and leaves its checkpoint
    torch.manual_seed(0)
    resumed = GPT(cfg)
    fit(resumed, loss, batch_fn(data, 8, 4, seed=1), TrainConfig(steps=12, lr=1e-2, ckpt_path=ckpt, progress=False))
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=f"{name} differs after resuming")
