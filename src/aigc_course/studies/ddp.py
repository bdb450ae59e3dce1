"""Data-parallel training, measured: a character GPT under ``torchrun`` (chapter 5.15).

``python -m aigc_course.studies.ddp --steps N --batch B --out FILE`` trains a small
character-level GPT on tinyshakespeare with :func:`aigc_course.train.fit` under whatever process
group ``torchrun`` gives it (none when it runs alone)::

    python -m aigc_course.studies.ddp --steps 200 --batch 32 --out one.json
    torchrun --nproc_per_node 2 -m aigc_course.studies.ddp --steps 200 --batch 32 --out two.json

``B`` is the *global* batch. Every rank builds the same seeded stream of global batches and
``fit`` keeps its own shard of each, B / W rows on each of the W ranks; DDP averages the
gradients, so the optimisation is the same for every W and only the wall time changes:

1. join the process group (:func:`aigc_course.train.distributed.init_distributed`);
2. build the same model (seeded) and the same batch stream on every rank;
3. train with ``fit``, timing every optimizer step (``on_step``);
4. keep the loss of every step, which ``fit`` logs for the global batch (the mean over the ranks);
5. rank 0 writes a JSON with seconds and loss per step, samples/s and the time to a target loss,
   and, with ``--weights FILE``, the final weights, so that runs with different W can be compared.

:func:`launch` runs the study with ``nproc`` processes from a notebook or a test, and
:func:`memory_per_gpu` gives the memory arithmetic of DDP and the ZeRO stages (FSDP) that the
chapter tabulates for the course's models and a 7B model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.distributed as dist


@dataclass
class StudyConfig:
    steps: int = 200
    batch: int = 32  # global batch: rows per optimizer step over all ranks together
    block_size: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    lr: float = 3e-3
    seed: int = 0
    threads: int | None = None  # torch threads per process (None: leave torch's default)
    target_loss: float | None = None  # time-to-loss threshold on the smoothed global loss
    window: int = 10  # steps of the running mean the target is checked on
    val_batches: int = 0  # held-out batches of 16 windows scored at the end by rank 0 (0: skip)

    def __post_init__(self):
        if self.steps < 1 or self.batch < 1 or self.window < 1:
            raise ValueError(f"steps, batch and window must be >= 1, got {self.steps}, {self.batch}, {self.window}.")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be a multiple of n_head={self.n_head}.")


def running_mean(values: list[float], window: int) -> list[float]:
    """Mean of the last ``window`` values at each position (fewer at the start): ``History.smoothed``."""
    from aigc_course.train import History

    return History(loss=list(values)).smoothed(window)


def time_to_loss(losses: list[float], step_seconds: list[float], target: float,
                 window: int = 10) -> tuple[int, float] | tuple[None, None]:
    """(steps, seconds) until the running mean of ``losses`` first reaches ``target``, or
    (None, None) when it never does. ``step_seconds[i]`` is the duration of step i."""
    if len(losses) != len(step_seconds):
        raise ValueError(f"losses and step_seconds differ in length: {len(losses)} vs {len(step_seconds)}.")
    elapsed = 0.0
    for i, (smooth, dt) in enumerate(zip(running_mean(losses, window), step_seconds)):
        elapsed += dt
        if smooth <= target:
            return i + 1, elapsed
    return None, None


def summarize(step_seconds: list[float], batch: int, skip: int | None = None) -> dict:
    """Steady-state speed: the median step time after the first ``skip`` steps (start-up: the
    first steps allocate memory and, under DDP, build the gradient buckets) and samples/s of the
    global batch at that speed."""
    if not step_seconds:
        raise ValueError("summarize needs at least one step time.")
    skip = min(len(step_seconds) // 10 if skip is None else skip, len(step_seconds) - 1)
    median = statistics.median(step_seconds[skip:])
    return {"median_step_seconds": median, "samples_per_second": batch / median,
            "train_seconds": sum(step_seconds)}


# What each GPU holds when training with Adam in mixed precision (Rajbhandari et al., 2020, section 3):
# 2 bytes per parameter of bf16/fp16 weights, 2 of gradients, and K = 12 of optimizer states (an fp32
# master copy of the weights, Adam's first and second moments, 4 bytes each). Activations come on top.
STAGES = ("DDP", "ZeRO-1", "ZeRO-2", "ZeRO-3 / FSDP")


def memory_per_gpu(n_params: float, n_gpus: int, stage: int, weight_bytes: float = 2,
                   grad_bytes: float = 2, optimizer_bytes: float = 12) -> float:
    """Bytes per GPU for weights, gradients and optimizer states of ``n_params`` parameters
    trained on ``n_gpus`` GPUs, ``stage`` indexing :data:`STAGES`:

    0. DDP: every GPU holds everything, (2 + 2 + K) psi;
    1. ZeRO-1 shards the optimizer states: (2 + 2) psi + K psi / N;
    2. ZeRO-2 also shards the gradients: 2 psi + (2 + K) psi / N;
    3. ZeRO-3 (FSDP's full sharding) also shards the weights: (2 + 2 + K) psi / N.
    """
    if stage not in range(len(STAGES)):
        raise ValueError(f"stage must be 0 (DDP), 1, 2 or 3 (ZeRO stages), got {stage}.")
    if n_gpus < 1 or n_params < 0:
        raise ValueError(f"Need n_gpus >= 1 and n_params >= 0, got {n_gpus} and {n_params}.")
    w, g, k = weight_bytes * n_params, grad_bytes * n_params, optimizer_bytes * n_params
    sharded = (0.0, k, k + g, k + g + w)[stage]  # the part split over the N GPUs
    return w + g + k - sharded + sharded / n_gpus


def _shakespeare():
    from aigc_course.recipes.gpt_shakespeare import shakespeare_ids

    return shakespeare_ids()


def run(cfg: StudyConfig, out: str | Path | None = None, weights: str | Path | None = None) -> dict:
    """Run the study in this process (steps 1-5 of the module docstring) and return the results
    (the same dict on every rank; rank 0 writes ``out`` and ``weights``)."""
    from aigc_course.models import GPT, GPTConfig
    from aigc_course.runtime import set_seed
    from aigc_course.text.batches import batch_fn, estimate_loss
    from aigc_course.train import TrainConfig, fit
    from aigc_course.train.distributed import barrier, cleanup, init_distributed

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    info = init_distributed()  # 1. the process group torchrun set up (or a single process)
    if cfg.batch % info.world_size:
        raise ValueError(f"The global batch {cfg.batch} does not split into {info.world_size} equal shards: "
                         f"use a multiple of {info.world_size}.")
    tok, train_ids, val_ids = _shakespeare()
    set_seed(cfg.seed)  # 2. the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = GPT(GPTConfig(tok.vocab_size, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.n_embd, bias=False))
    model = model.to(info.device)
    data = batch_fn(train_ids.to(info.device), cfg.block_size, cfg.batch, seed=cfg.seed)  # global batches
    stamps = [time.perf_counter()]
    tcfg = TrainConfig(steps=cfg.steps, lr=cfg.lr, grad_clip=1.0, progress=False, desc="ddp study")
    history = fit(model, lambda m, b: m(*b)[1], data, tcfg,  # 3. train, one time stamp per step
                  on_step=lambda step: stamps.append(time.perf_counter()))
    step_seconds = [b - a for a, b in zip(stamps, stamps[1:])]
    losses = history.loss  # 4. fit logs the global batch's loss: the mean of the equal shards' means
    result = {
        "world_size": info.world_size,
        "backend": dist.get_backend() if dist.is_initialized() else None,
        "device": str(info.device),
        "threads_per_process": torch.get_num_threads(),
        "config": asdict(cfg),
        "parameters": sum(p.numel() for p in model.parameters()),
        "step_seconds": step_seconds,
        "loss": losses,
        **summarize(step_seconds, cfg.batch),
        "final_loss": running_mean(losses, cfg.window)[-1],
    }
    if cfg.target_loss is not None:
        result["steps_to_target"], result["seconds_to_target"] = time_to_loss(
            losses, step_seconds, cfg.target_loss, cfg.window)
    if info.is_main:  # 5. one writer
        if cfg.val_batches:
            result["val_loss"] = estimate_loss(model, val_ids.to(info.device), cfg.block_size, 16,
                                               cfg.val_batches, seed=0)
        if out is not None:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(json.dumps(result, indent=1), encoding="utf-8")
        if weights is not None:
            from safetensors.torch import save_model

            save_model(model, str(weights))  # handles the tied embedding / output weights
    barrier()
    cleanup()
    return result


def _args(cfg: StudyConfig) -> list[str]:
    """The command-line flags that reproduce ``cfg``."""
    args = []
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if value is not None:
            args += [f"--{f.name.replace('_', '-')}", str(value)]
    return args


def launch(cfg: StudyConfig, nproc: int, out: str | Path, weights: str | Path | None = None,
           timeout: float = 600, env: dict | None = None) -> dict:
    """Run the study with ``nproc`` processes under ``torchrun`` and return rank 0's results,
    with ``wall_seconds``: the whole job as seen from outside, launching included."""
    from aigc_course.train.distributed import torchrun

    args = ["-m", "aigc_course.studies.ddp", *_args(cfg), "--out", str(out)]
    if weights is not None:
        args += ["--weights", str(weights)]
    t0 = time.perf_counter()
    proc = torchrun(args, nproc=nproc, timeout=timeout, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        lines = ((proc.stdout or "") + (proc.stderr or "")).splitlines()
        worker = [line for line in lines if line.startswith("[rank")]  # the workers' traceback
        tail = "\n".join((worker or lines)[-20:])
        raise RuntimeError(f"The DDP study with {nproc} processes failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(Path(out).read_text(encoding="utf-8"))
    result["wall_seconds"] = wall
    return result


def parse(argv: list[str] | None = None) -> tuple[StudyConfig, str | None, str | None]:
    """(config, out, weights) from the command line (the inverse of :func:`launch`'s flags)."""
    parser = argparse.ArgumentParser(prog="python -m aigc_course.studies.ddp", description=__doc__.splitlines()[0])
    for f in fields(StudyConfig):
        kind = {"int": int, "float": float, "int | None": int, "float | None": float}[str(f.type)]
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=f.default)
    parser.add_argument("--out", default=None, help="JSON file rank 0 writes the results to")
    parser.add_argument("--weights", default=None, help="safetensors file for the final weights (rank 0)")
    args = vars(parser.parse_args(argv))
    out, weights = args.pop("out"), args.pop("weights")
    return StudyConfig(**args), out, weights


def main(argv: list[str] | None = None) -> dict:
    result = run(*parse(argv))
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"world size {result['world_size']}: {result['samples_per_second']:.1f} samples/s, "
              f"final loss {result['final_loss']:.4f}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
