"""The data-parallel study of chapter 5.15 (``aigc_course.studies.ddp``): its arithmetic, a run in
this process, and a run with two processes under torchrun that ends with the same weights."""

from __future__ import annotations

import json
import subprocess

import pytest
import torch
from data_marks import needs_data
from safetensors.torch import load_file

import aigc_course.train.distributed as distributed
from aigc_course.studies import ddp

TINY = dict(steps=3, batch=8, block_size=16, n_layer=1, n_head=2, n_embd=16, target_loss=10.0, window=2)


def test_running_mean_and_time_to_loss():
    assert ddp.running_mean([4.0, 2.0, 0.0, 2.0], 2) == [4.0, 3.0, 1.0, 1.0]
    # the running mean over 2 steps first reaches 1.0 at step 3, after 0.1 + 0.2 + 0.3 seconds
    steps, seconds = ddp.time_to_loss([4.0, 2.0, 0.0, 2.0], [0.1, 0.2, 0.3, 0.4], target=1.0, window=2)
    assert steps == 3 and seconds == pytest.approx(0.6)
    assert ddp.time_to_loss([4.0, 3.0], [0.1, 0.1], target=1.0) == (None, None)
    with pytest.raises(ValueError, match="differ in length"):
        ddp.time_to_loss([1.0], [0.1, 0.2], target=1.0)


def test_summarize_skips_the_start_up_steps():
    s = ddp.summarize([5.0] + [0.5] * 19, batch=32)  # the first step is slow
    assert s["median_step_seconds"] == 0.5 and s["samples_per_second"] == 64.0
    assert s["train_seconds"] == pytest.approx(14.5)
    assert ddp.summarize([0.25], batch=2)["samples_per_second"] == 8.0
    with pytest.raises(ValueError, match="at least one step"):
        ddp.summarize([], batch=2)


def test_bad_config_and_flags_round_trip():
    with pytest.raises(ValueError, match="multiple of n_head"):
        ddp.StudyConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="must be >= 1"):
        ddp.StudyConfig(steps=0)
    cfg = ddp.StudyConfig(**TINY, threads=1)
    assert ddp.parse([*ddp._args(cfg), "--out", "r.json"]) == (cfg, "r.json", None)


def test_a_batch_that_does_not_split_raises(monkeypatch):
    two = distributed.DistInfo(0, 2, 0, torch.device("cpu"))
    monkeypatch.setattr(distributed, "init_distributed", lambda *a, **k: two)
    with pytest.raises(ValueError, match="equal shards"):
        ddp.run(ddp.StudyConfig(**{**TINY, "batch": 7}))


@needs_data
def test_two_processes_train_like_one_with_the_global_batch(tmp_path):
    cfg = ddp.StudyConfig(**TINY)
    one = ddp.run(cfg, out=tmp_path / "one.json", weights=tmp_path / "one.safetensors")  # in this process
    assert one["world_size"] == 1 and len(one["loss"]) == len(one["step_seconds"]) == cfg.steps
    assert json.loads((tmp_path / "one.json").read_text())["loss"] == one["loss"]
    assert one["steps_to_target"] == 1 and one["samples_per_second"] > 0

    two = ddp.launch(cfg, 2, tmp_path / "two.json", weights=tmp_path / "two.safetensors", timeout=180)
    assert two["world_size"] == 2 and two["backend"] == "gloo" and two["wall_seconds"] > 0
    # the same optimisation: the global batch's loss and the weights agree up to rounding
    torch.testing.assert_close(torch.tensor(two["loss"]), torch.tensor(one["loss"]), rtol=0, atol=1e-5)
    w1, w2 = load_file(tmp_path / "one.safetensors"), load_file(tmp_path / "two.safetensors")
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=0, atol=1e-5)


def test_a_failing_launch_shows_the_workers_error(tmp_path, monkeypatch):
    log = "launcher noise\n[rank1]: Traceback\n[rank1]: ValueError: The global batch 3 does not split\nmore noise"

    def failed(args, nproc, timeout, env):
        assert args[:2] == ["-m", "aigc_course.studies.ddp"] and "--out" in args and nproc == 2
        return subprocess.CompletedProcess(args, 1, "", log)

    monkeypatch.setattr(distributed, "torchrun", failed)
    with pytest.raises(RuntimeError, match=r"2 processes failed \(exit 1\)(.|\n)*does not split") as err:
        ddp.launch(ddp.StudyConfig(**TINY), 2, tmp_path / "x.json")
    assert "noise" not in str(err.value)


def test_memory_per_gpu_reproduces_the_zero_paper():
    # Rajbhandari et al. (2020), figure 1: 7.5 B parameters, 64 GPUs, mixed-precision Adam (K = 12)
    gb = [ddp.memory_per_gpu(7.5e9, 64, stage) / 1e9 for stage in range(4)]
    assert gb == pytest.approx([120.0, 31.4, 16.6, 1.9], abs=0.05)
    assert ddp.memory_per_gpu(1000, 1, 3) == ddp.memory_per_gpu(1000, 1, 0) == 16_000  # one GPU: nothing to share
    # plain fp32 Adam: 4 + 4 + 8 bytes per parameter, the moments sharded by ZeRO-1
    assert ddp.memory_per_gpu(1000, 8, 0, weight_bytes=4, grad_bytes=4, optimizer_bytes=8) == 16_000
    assert ddp.memory_per_gpu(1000, 8, 1, weight_bytes=4, grad_bytes=4, optimizer_bytes=8) == 9_000
    with pytest.raises(ValueError, match="stage must be"):
        ddp.memory_per_gpu(1000, 8, 4)
    with pytest.raises(ValueError, match="n_gpus >= 1"):
        ddp.memory_per_gpu(1000, 0, 1)
