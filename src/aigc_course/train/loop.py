"""One model-agnostic training loop, used by every chapter.

Taught in part 2, "Deep learning in brief", where the same loop is first written by hand in
five lines (forward, loss, zero_grad, backward, step) and then replaced by :func:`fit`, which
adds what real training needs:

1. batches from any iterable (a DataLoader is cycled) or a ``get_batch(step)`` function,
   moved to the model's device;
2. mixed precision on CUDA (bf16, or fp16 with a gradient scaler) and gradient clipping;
3. a progress bar (hidden in CI), a loss history, periodic evaluation;
4. checkpoints in safetensors written atomically, and resuming from the last one (with the
   state of the data stream and of the random generators, so a resumed run continues exactly);
5. gradient accumulation (``accum_steps`` micro-batches per optimizer step) and, when a process
   group of several processes is initialised (``torchrun``), data parallelism with DDP: each rank
   trains on its shard of every global batch (chapter 5.15, :mod:`aigc_course.train.distributed`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from aigc_course.checkpoint import load_checkpoint, save_checkpoint, state_text, text_state
from aigc_course.runtime import amp_dtype, autocast, is_quiet
from aigc_course.train.distributed import (
    LossModule,
    all_reduce_mean,
    barrier,
    broadcast_object,
    data_parallel,
    dist_info,
    gather_objects,
    reseed_rank,
    shard_batch,
)


@dataclass
class TrainConfig:
    steps: int = 1000
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0  # max global gradient norm; None to disable
    warmup: int = 0  # linear warm-up steps
    decay: bool = False  # cosine decay to lr_min after warm-up
    lr_min: float = 0.0
    eval_every: int | None = None
    ckpt_path: str | Path | None = None
    ckpt_every: int | None = None  # defaults to eval_every, else the end only
    resume: bool = True  # continue from ckpt_path when it exists
    amp: bool = True  # autocast on CUDA (no effect on CPU)
    progress: bool | None = None  # None: on, except in CI / AIGC_QUIET
    desc: str = "train"
    accum_steps: int = 1  # micro-batches per optimizer step (the batch is cut into this many blocks)
    find_unused_parameters: bool = False  # DDP only: set if the loss leaves some parameters unused


@dataclass
class History:
    """Loss per step and evaluation results, ready to plot with ``plot_losses``."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"steps": self.steps, "loss": self.loss, "evals": self.evals, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: dict) -> History:
        return cls(d.get("steps", []), d.get("loss", []), d.get("evals", []), d.get("seconds", 0.0))

    def smoothed(self, window: int = 20) -> list[float]:
        """Running mean of the loss over ``window`` steps (for a readable curve)."""
        out, acc = [], 0.0
        for i, v in enumerate(self.loss):
            acc += v
            if i >= window:
                acc -= self.loss[i - window]
            out.append(acc / min(i + 1, window))
        return out


def to_device(batch, device):
    """Move a tensor, or tensors nested in tuples / lists / dicts, to ``device``."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


class RandomBatches:
    """``step -> batch``: what :func:`random_batches` returns; ``state_dict`` / ``load_state_dict``
    save and restore the generator, so :func:`fit` resumes the stream of batches exactly."""

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, generator: torch.Generator | None):
        self.tensors, self.batch_size, self.generator = tensors, batch_size, generator

    def __call__(self, step: int):
        # drawn on the generator's device (a CUDA generator works too), indices kept on the CPU
        n, g = len(self.tensors[0]), self.generator
        idx = torch.randint(0, n, (self.batch_size,), generator=g, device=g.device if g is not None else None).cpu()  # (B,)
        return self.tensors[0][idx] if len(self.tensors) == 1 else tuple(x[idx] for x in self.tensors)

    def state_dict(self) -> dict:
        return {"generator": state_text(self.generator.get_state())} if self.generator is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.generator is not None and "generator" in state:
            self.generator.set_state(text_state(state["generator"]))


def random_batches(*tensors: torch.Tensor, batch_size: int, generator: torch.Generator | None = None) -> RandomBatches:
    """A function ``step -> batch`` for :func:`fit`: a random mini-batch of ``tensors`` (the same
    rows of each), drawn with replacement across steps from ``generator`` (a seeded generator
    makes the run repeat). One tensor gives a tensor, several give a tuple. Under DDP the batch is
    the global one; :func:`fit` gives each rank its shard."""
    if not tensors or any(len(x) != len(tensors[0]) for x in tensors):
        raise ValueError("random_batches needs one or more tensors with the same number of rows.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    return RandomBatches(tensors, batch_size, generator)


def _batches(data, start: int):
    if callable(data) and not isinstance(data, Iterable):
        step = start
        while True:
            yield data(step)
            step += 1
    else:
        while True:
            empty = True
            for batch in data:
                empty = False
                yield batch
            if empty:
                raise ValueError("The training data yielded no batch.")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate at ``step``: linear warm-up, then constant or cosine decay to lr_min."""
    if cfg.warmup and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if not cfg.decay:
        return cfg.lr
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * min(1.0, progress)))


def _rng_state(device: torch.device) -> dict:
    """The global generators (dropout, noise drawn in a model) of this process, for a checkpoint."""
    cuda = {"cuda": state_text(torch.cuda.get_rng_state(device))} if device.type == "cuda" else {}
    return {"cpu": state_text(torch.get_rng_state()), **cuda}


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(text_state(state["cpu"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(text_state(state["cuda"]), device)


def fit(model: torch.nn.Module, loss_fn: Callable, data, cfg: TrainConfig | None = None,
        optimizer: torch.optim.Optimizer | None = None, eval_fn: Callable | None = None,
        history: History | None = None, on_step: Callable[[int], None] | None = None) -> History:
    """Train ``model`` for ``cfg.steps`` steps and return its :class:`History`.

    Args:
        loss_fn: ``loss_fn(model, batch) -> loss`` (a scalar tensor, or a dict with key "loss";
            the other entries are averaged into the progress bar).
        data: an iterable of batches (cycled) or a function ``step -> batch``. If it has
            ``state_dict`` / ``load_state_dict`` (as :func:`random_batches`), checkpoints save its
            state and a resumed run continues the same stream of batches.
        eval_fn: ``eval_fn(model) -> dict of floats``, called every ``cfg.eval_every`` steps and
            at the end, under ``torch.no_grad()`` with the model in eval mode (on rank 0 only).
        on_step: ``on_step(step)`` after each optimizer step (e.g. to update an EMA copy).

    Under a process group of W > 1 processes (``torchrun``), every rank calls ``fit`` with the same
    data: each batch is the global batch B, of which each rank trains on its B / W rows, the model
    is wrapped in DDP (gradients averaged over the ranks), and steps, learning rate and the logged
    loss refer to the global batch. Only rank 0 shows progress, evaluates and writes checkpoints.
    """
    cfg = cfg or TrainConfig()
    if cfg.accum_steps < 1:
        raise ValueError(f"accum_steps must be >= 1, got {cfg.accum_steps}.")
    device = next(model.parameters()).device
    info = dist_info()
    ddp = info.distributed
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history = history or History()
    start, restored = 0, False
    if cfg.ckpt_path and cfg.resume and Path(cfg.ckpt_path).is_file():
        state = load_checkpoint(cfg.ckpt_path, model, optimizer, map_location=device)
        start = int(state.get("step", 0))
        history = History.from_dict(state.get("history", {}))
        if "data" in state and hasattr(data, "load_state_dict"):
            data.load_state_dict(state["data"])
        if len(state.get("rng", [])) == info.world_size:
            _set_rng_state(state["rng"][info.rank], device)
            restored = True
    if ddp and not restored:
        reseed_rank(info.rank)
    net = data_parallel(LossModule(model, loss_fn), device, cfg.find_unused_parameters) if ddp else None
    ckpt_every = cfg.ckpt_every or cfg.eval_every
    use_amp = cfg.amp and amp_dtype(device) is not None
    scaler = torch.amp.GradScaler("cuda") if use_amp and amp_dtype(device) == torch.float16 else None
    quiet = (is_quiet() if cfg.progress is None else not cfg.progress) or not info.is_main

    def run_eval(step: int) -> None:
        if eval_fn is None or not info.is_main:
            return
        model.eval()
        with torch.no_grad():
            result = {k: float(v) for k, v in eval_fn(model).items()}
        model.train()
        history.evals.append({"step": step, **result})

    def save(step: int) -> None:
        extra = {"rng": gather_objects(_rng_state(device))}  # every rank's generators (a collective)
        if hasattr(data, "state_dict"):
            extra["data"] = data.state_dict()
        if info.is_main:
            save_checkpoint(cfg.ckpt_path, model, optimizer, step=step, history=history.to_dict(), **extra)
        barrier()  # the others wait until the file is complete

    model.train()
    batches = _batches(data, start)
    t0 = time.perf_counter()
    bar = tqdm(range(start, cfg.steps), desc=cfg.desc, disable=quiet, leave=False)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        batch = next(batches)
        if ddp:
            batch = shard_batch(batch, info.rank, info.world_size)  # this rank's B / W rows
        batch = to_device(batch, device)
        micro = [batch] if cfg.accum_steps == 1 else [shard_batch(batch, i, cfg.accum_steps)
                                                      for i in range(cfg.accum_steps)]
        losses = []
        optimizer.zero_grad(set_to_none=True)
        for i, mb in enumerate(micro):
            # DDP all-reduces the gradients only on the last micro-batch; the others just accumulate
            sync = not ddp or i == len(micro) - 1
            with contextlib.nullcontext() if sync else net.no_sync():
                with autocast(device) if use_amp else contextlib.nullcontext():
                    out = net(mb) if ddp else loss_fn(model, mb)
                loss = out["loss"] if isinstance(out, dict) else out
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"Loss is {loss.item()} at step {step}: lower the learning rate.")
                scaled = loss / cfg.accum_steps if cfg.accum_steps > 1 else loss  # the mean over micro-batches
                if scaler is not None:
                    scaler.scale(scaled).backward()
                else:
                    scaled.backward()
            losses.append(loss.detach())
        if scaler is not None:
            scaler.unscale_(optimizer)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if on_step is not None:
            on_step(step)
        step_loss = losses[0] if len(losses) == 1 else torch.stack(losses).mean()
        history.steps.append(step)
        history.loss.append(all_reduce_mean(step_loss).item())  # the loss of the global batch
        if not quiet and step % 10 == 0:
            bar.set_postfix(loss=f"{history.smoothed(10)[-1]:.4f}")
        done = step + 1
        if cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.steps:
            run_eval(done)
        if cfg.ckpt_path and ckpt_every and done % ckpt_every == 0 and done < cfg.steps:
            history.seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            save(done)
    bar.close()
    if start < cfg.steps or not history.evals:
        run_eval(cfg.steps)
    history.seconds += time.perf_counter() - t0
    if cfg.ckpt_path:
        save(cfg.steps)
    if ddp:
        history.evals = broadcast_object(history.evals)  # rank 0 evaluated; every rank returns the same
    model.eval()
    return history


@torch.no_grad()
def evaluate(model: torch.nn.Module, loss_fn: Callable, data: Iterable, max_batches: int | None = None) -> float:
    """Mean of ``loss_fn(model, batch)`` over (up to ``max_batches``) batches of ``data``."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    for i, batch in enumerate(data):
        if max_batches is not None and i >= max_batches:
            break
        out = loss_fn(model, to_device(batch, device))
        total += float(out["loss"] if isinstance(out, dict) else out)
        n += 1
    model.train(was_training)
    if n == 0:
        raise ValueError("evaluate() got no batch.")
    return total / n


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of ``x`` whose arg-max logit equals the label ``y``."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        logits = model(x[i : i + batch_size].to(device))
        correct += (logits.argmax(-1).cpu() == y[i : i + batch_size]).sum().item()
    model.train(was_training)
    return correct / len(x)
