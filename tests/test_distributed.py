"""Data parallelism (chapter 5.15): ``fit`` under DDP with two CPU processes (gloo), launched by torchrun.

Each launch costs a few seconds of start-up (two interpreters importing torch), so one launch runs
several checks and writes its results; the single-process references run in the test process.
Weights of two processes with global batch B equal one process with batch B to float rounding:
the mean of two shard means is the global mean up to the order of the additions.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import time

import pytest
import torch
import torch.nn.functional as F
from data_marks import has_mirror
from safetensors.torch import load_file

from aigc_course.models import MLP, MLPConfig
from aigc_course.train import TrainConfig, fit, random_batches
from aigc_course.train.distributed import (
    DistInfo,
    dist_info,
    init_distributed,
    is_main_process,
    shard_batch,
    torchrun,
)

TOL = {"atol": 2e-5, "rtol": 1e-4}  # float32 rounding, a few steps of Adam

WORKER = '''
"""Runs under torchrun (2 ranks) and, imported with runpy, in the test process (1 rank)."""
import sys
from pathlib import Path

import torch

from aigc_course.models import GPT, GPTConfig, UNet, UNetConfig
from aigc_course.recipes.char_gpt import CharGPTRecipe, train_char_gpt
from aigc_course.recipes.diffusion_training import DiffusionRecipe, train_diffusion
from aigc_course.runtime import set_seed
from aigc_course.text.tokenizers import CharTokenizer
from aigc_course.models.toy2d import ToyGAN
from aigc_course.train import TrainConfig, fit, random_batches, train_gan
from aigc_course.train.distributed import gather_objects, init_distributed, is_main_process

TEXT = "to be or not to be, that is the question: whether tis nobler in the mind to suffer " * 8


def char_gpt(out):
    """The char_gpt recipe path (fast: 20 steps) on a tiny GPT, batch 8 (global)."""
    tok = CharTokenizer.from_text(TEXT)
    ids = tok.encode_tensor(TEXT)
    recipe = CharGPTRecipe(n_layer=1, n_head=2, n_embd=32, block_size=16, batch_size=8, steps=20,
                           lr=3e-3, min_lr=3e-4, warmup=0)
    return train_char_gpt("tiny_gpt", "cpu", recipe, ids[:600], ids[600:], tok, {"dataset": "test"},
                          out_dir=out, fast=True, seed=0)


def diffusion(out):
    """The diffusion_training path: a tiny class-conditional U-Net, 6 steps of global batch 8."""
    set_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(64, 1, 28, 28, generator=g) * 2 - 1
    y = torch.randint(0, 10, (64,), generator=g)
    model = UNet(UNetConfig(base=8, time_dim=32, num_classes=10, attention=False))
    cond = lambda labels, gen: {"y": labels}  # noqa: E731
    train_diffusion(model, x, y, DiffusionRecipe(steps=6, batch_size=8, warmup=0), cond_fn=cond, seed=0)
    if is_main_process():
        torch.save(model.state_dict(), Path(out) / "diffusion.pt")


def windows(n=64, T=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 12, (n, T + 1), generator=g)  # (N, T + 1) token windows


class Interrupted(Exception):
    pass


def gpt_fit(steps, accum=1, ckpt=None, dropout=0.0, batch=8, crash_at=None):
    """fit with random_batches on a tiny GPT (dropout exercises the saved random generators);
    ``crash_at``: stop with an exception after that step, as a killed job would."""
    set_seed(0)
    model = GPT(GPTConfig(12, 16, 1, 2, 16, dropout=dropout))
    data = random_batches(windows(), batch_size=batch, generator=torch.Generator().manual_seed(3))
    cfg = TrainConfig(steps=steps, lr=1e-2, decay=True, warmup=2, accum_steps=accum, ckpt_path=ckpt,
                      ckpt_every=2 if ckpt else None)

    def on_step(step):
        if step == crash_at:
            raise Interrupted(step)

    hist = fit(model, lambda m, w: m(w[:, :-1], w[:, 1:])[1], data, cfg, on_step=on_step)
    return model, hist


def gan():
    """train_gan (its own loop) under DDP: after 3 steps every rank holds the same weights."""
    set_seed(0)
    model = ToyGAN()
    train_gan(model, torch.randn(256, 2, generator=torch.Generator().manual_seed(0)), steps=3, batch_size=8)
    copies = gather_objects(torch.cat([p.detach().flatten() for p in model.state_dict().values()]))
    return len(copies), all(torch.equal(c, copies[0]) for c in copies)


if __name__ == "__main__":
    out = Path(sys.argv[1])
    info = init_distributed(timeout_s=60)
    char_gpt(out / "gpt")
    diffusion(out)
    acc, _ = gpt_fit(4, accum=2)  # 2 ranks x 2 micro-batches x 2 rows
    full, full_hist = gpt_fit(6, ckpt=str(out / "full.ckpt"), dropout=0.1)
    try:
        gpt_fit(6, ckpt=str(out / "resumed.ckpt"), dropout=0.1, crash_at=2)  # dies in step 3; saved after 2
    except Interrupted:
        pass
    resumed, resumed_hist = gpt_fit(6, ckpt=str(out / "resumed.ckpt"), dropout=0.1)  # a new model resumes
    gan_copies = gan()
    if is_main_process():
        torch.save({"gan": gan_copies, "acc": acc.state_dict(), "full": full.state_dict(), "resumed": resumed.state_dict(),
                    "full_loss": full_hist.loss, "resumed_loss": resumed_hist.loss}, out / "fit.pt")
    if "--cli" in sys.argv:  # last: what `torchrun ... -m aigc_course.train NAME` runs (it ends the group)
        from aigc_course.cli import main

        main(["ddpm_mnist", "--fast", "--out", str(out / "cli")])
'''


def test_two_processes_equal_one_process(tmp_path):
    """One launch of the worker with 2 processes (one launch costs seconds of start-up; one test, so
    that pytest-xdist never starts it twice), then the same functions in this process with the whole
    batch: the char_gpt recipe, the diffusion recipe, accumulation (2 ranks x 2 micro-batches),
    resuming from a checkpoint, the GAN loop, and the command line (with the data mirror)."""
    out = tmp_path / "ddp"
    out.mkdir()
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    cli = has_mirror() or bool(os.environ.get("CI"))  # in CI the mirror must be there (see data_marks)
    proc = torchrun([str(script), str(out)] + (["--cli"] if cli else []), nproc=2, timeout=240,
                    env={"AIGC_QUIET": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]

    if cli:  # the command line under torchrun: one weights file and one card, one line printed
        assert sorted(p.name for p in (out / "cli").iterdir()) == ["ddpm_mnist.json", "ddpm_mnist.safetensors"]
        assert proc.stdout.count("ddpm_mnist:") == 1
        assert json.loads((out / "cli" / "ddpm_mnist.json").read_text())["distributed"]["processes"] == 2
    worker = runpy.run_path(str(script))

    # the char_gpt recipe (fast: 20 steps, global batch 8): weights, card and metrics
    card = worker["char_gpt"](tmp_path / "one")
    one, two = load_file(tmp_path / "one" / "tiny_gpt.safetensors"), load_file(out / "gpt" / "tiny_gpt.safetensors")
    assert one.keys() == two.keys()
    for k in one:
        torch.testing.assert_close(two[k], one[k], **TOL, msg=lambda m, k=k: f"char_gpt {k}: {m}")
    two_card = json.loads((out / "gpt" / "tiny_gpt.json").read_text())
    assert two_card["distributed"]["processes"] == 2 and two_card["distributed"]["backend"] == "gloo"
    assert two_card["train_command"].startswith("torchrun --nproc_per_node 2 -m aigc_course.train")
    assert "distributed" not in card and card["train_command"].startswith("python -m")
    assert abs(two_card["metrics"]["val_loss"] - card["metrics"]["val_loss"]) < 1e-3

    # the diffusion recipe: rows, labels, timesteps and noise are all part of the sharded batch
    worker["diffusion"](tmp_path)
    one, two = torch.load(tmp_path / "diffusion.pt"), torch.load(out / "diffusion.pt")
    for k in one:
        torch.testing.assert_close(two[k], one[k], **TOL, msg=lambda m, k=k: f"diffusion {k}: {m}")

    # 2 ranks x 2 micro-batches of 2 rows = one process with batch 8
    saved = torch.load(out / "fit.pt")
    for k, v in worker["gpt_fit"](4)[0].state_dict().items():
        torch.testing.assert_close(saved["acc"][k], v, **TOL, msg=lambda m, k=k: f"accumulation {k}: {m}")

    # the GAN loop: two ranks, identical weights after the all-reduced steps
    assert saved["gan"] == (2, True)

    # resumed after a crash = uninterrupted: the same batches, dropout masks and steps, exactly
    assert saved["resumed_loss"] == saved["full_loss"]
    for k, v in saved["full"].items():
        assert torch.equal(saved["resumed"][k], v), f"resume {k}"


def test_accumulation_equals_the_whole_batch_in_one_process():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 3, (64,), generator=g)

    def run(accum):
        torch.manual_seed(0)
        model = MLP(MLPConfig.toy(4, 3, 16))
        data = random_batches(x, y, batch_size=16, generator=torch.Generator().manual_seed(1))
        hist = fit(model, lambda m, b: F.cross_entropy(m(b[0]), b[1]), data,
                   TrainConfig(steps=5, lr=1e-2, accum_steps=accum))
        return model, hist

    (a, ha), (b, hb) = run(1), run(2)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(q, p, **TOL)
    torch.testing.assert_close(torch.tensor(hb.loss), torch.tensor(ha.loss), **TOL)
    with pytest.raises(ValueError, match="accum_steps"):
        fit(a, lambda m, b: m(b).sum(), random_batches(x, batch_size=4), TrainConfig(steps=1, accum_steps=0))


def test_random_batches_resume_from_their_state():
    x = torch.arange(100)
    data = random_batches(x, batch_size=5, generator=torch.Generator().manual_seed(0))
    data(0)
    state = json.loads(json.dumps(data.state_dict()))  # plain JSON, as in a checkpoint
    expected = [data(s) for s in range(3)]
    again = random_batches(x, batch_size=5, generator=torch.Generator().manual_seed(42))
    again.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(expected, [again(s) for s in range(3)]))


def test_a_rank_that_raises_ends_the_job(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(
        "import torch, torch.distributed as dist\n"
        "from aigc_course.train.distributed import init_distributed\n"
        "info = init_distributed(timeout_s=30)\n"
        "if info.rank == 1:\n"
        "    raise ValueError('boom on rank 1')\n"
        "dist.all_reduce(torch.ones(1))  # rank 0 waits for a partner that is gone\n"
        "dist.barrier()\n", encoding="utf-8")
    t0 = time.perf_counter()
    proc = torchrun([str(script)], nproc=2, timeout=90)
    assert proc.returncode != 0
    assert "boom on rank 1" in proc.stdout + proc.stderr
    assert time.perf_counter() - t0 < 60


def test_shard_batch_cuts_blocks_and_rejects_uneven_batches():
    x, y = torch.arange(8).view(8, 1), torch.arange(8)
    first, second = shard_batch((x, {"y": y}, "tag"), 0, 2), shard_batch((x, {"y": y}, "tag"), 1, 2)
    assert torch.equal(first[0], x[:4]) and torch.equal(second[1]["y"], y[4:]) and second[2] == "tag"
    with pytest.raises(ValueError, match="multiple of 3"):
        shard_batch(x, 0, 3)
    with pytest.raises(ValueError, match="same number of rows"):
        shard_batch((x, y[:4]), 0, 2)
    with pytest.raises(ValueError, match="rank"):
        shard_batch(x, 2, 2)


def test_without_torchrun_everything_is_one_process(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    info = init_distributed()
    assert isinstance(info, DistInfo) and (info.rank, info.world_size, info.local_rank) == (0, 1, 0)
    assert info.is_main and not info.distributed and is_main_process() and dist_info() == info
    with pytest.raises(ValueError, match="timeout_s"):
        init_distributed(timeout_s=0)


def test_torchrun_kills_a_job_that_runs_past_its_timeout(tmp_path):
    script = tmp_path / "sleep.py"
    script.write_text("import time\ntime.sleep(60)\n", encoding="utf-8")
    with pytest.raises(subprocess.TimeoutExpired):
        torchrun([str(script)], nproc=1, timeout=3)
