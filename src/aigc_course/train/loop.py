"""One model-agnostic training loop, used by every chapter.

Taught in part 2, "Deep learning in brief", where the same loop is first written by hand in
five lines (forward, loss, zero_grad, backward, step) and then replaced by :func:`fit`, which
adds what real training needs:

1. batches from any iterable (a DataLoader is cycled) or a ``get_batch(step)`` function,
   moved to the model's device;
2. mixed precision on CUDA (bf16, or fp16 with a gradient scaler) and gradient clipping;
3. a progress bar (hidden in CI), a loss history, periodic evaluation;
4. checkpoints in safetensors written atomically, and resuming from the last one.
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

from aigc_course.checkpoint import load_checkpoint, save_checkpoint
from aigc_course.runtime import amp_dtype, autocast, is_quiet


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


def random_batches(*tensors: torch.Tensor, batch_size: int, generator: torch.Generator | None = None):
    """A function ``step -> batch`` for :func:`fit`: a random mini-batch of ``tensors`` (the same
    rows of each), drawn with replacement across steps from ``generator`` (a seeded generator
    makes the run repeat). One tensor gives a tensor, several give a tuple."""
    if not tensors or any(len(x) != len(tensors[0]) for x in tensors):
        raise ValueError("random_batches needs one or more tensors with the same number of rows.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    n = len(tensors[0])

    def get_batch(step: int):
        # drawn on the generator's device (a CUDA generator works too), indices kept on the CPU
        where = generator.device if generator is not None else None
        idx = torch.randint(0, n, (batch_size,), generator=generator, device=where).cpu()  # (B,)
        return tensors[0][idx] if len(tensors) == 1 else tuple(x[idx] for x in tensors)

    return get_batch


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


def fit(model: torch.nn.Module, loss_fn: Callable, data, cfg: TrainConfig | None = None,
        optimizer: torch.optim.Optimizer | None = None, eval_fn: Callable | None = None,
        history: History | None = None, on_step: Callable[[int], None] | None = None) -> History:
    """Train ``model`` for ``cfg.steps`` steps and return its :class:`History`.

    Args:
        loss_fn: ``loss_fn(model, batch) -> loss`` (a scalar tensor, or a dict with key "loss";
            the other entries are averaged into the progress bar).
        data: an iterable of batches (cycled) or a function ``step -> batch``.
        eval_fn: ``eval_fn(model) -> dict of floats``, called every ``cfg.eval_every`` steps and
            at the end, under ``torch.no_grad()`` with the model in eval mode.
        on_step: ``on_step(step)`` after each optimizer step (e.g. to update an EMA copy).
    """
    cfg = cfg or TrainConfig()
    device = next(model.parameters()).device
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history = history or History()
    start = 0
    if cfg.ckpt_path and cfg.resume and Path(cfg.ckpt_path).is_file():
        state = load_checkpoint(cfg.ckpt_path, model, optimizer, map_location=device)
        start = int(state.get("step", 0))
        history = History.from_dict(state.get("history", {}))
    ckpt_every = cfg.ckpt_every or cfg.eval_every
    use_amp = cfg.amp and amp_dtype(device) is not None
    scaler = torch.amp.GradScaler("cuda") if use_amp and amp_dtype(device) == torch.float16 else None
    quiet = is_quiet() if cfg.progress is None else not cfg.progress

    def run_eval(step: int) -> None:
        if eval_fn is None:
            return
        model.eval()
        with torch.no_grad():
            result = {k: float(v) for k, v in eval_fn(model).items()}
        model.train()
        history.evals.append({"step": step, **result})

    model.train()
    batches = _batches(data, start)
    t0 = time.perf_counter()
    bar = tqdm(range(start, cfg.steps), desc=cfg.desc, disable=quiet, leave=False)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        batch = to_device(next(batches), device)
        with autocast(device) if use_amp else contextlib.nullcontext():
            out = loss_fn(model, batch)
        loss = out["loss"] if isinstance(out, dict) else out
        if not torch.isfinite(loss):
            raise FloatingPointError(f"Loss is {loss.item()} at step {step}: lower the learning rate.")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if on_step is not None:
            on_step(step)
        history.steps.append(step)
        history.loss.append(loss.item())
        if not quiet and step % 10 == 0:
            bar.set_postfix(loss=f"{history.smoothed(10)[-1]:.4f}")
        done = step + 1
        if cfg.eval_every and done % cfg.eval_every == 0 and done < cfg.steps:
            run_eval(done)
        if cfg.ckpt_path and ckpt_every and done % ckpt_every == 0 and done < cfg.steps:
            history.seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            save_checkpoint(cfg.ckpt_path, model, optimizer, step=done, history=history.to_dict())
    bar.close()
    if start < cfg.steps or not history.evals:
        run_eval(cfg.steps)
    history.seconds += time.perf_counter() - t0
    if cfg.ckpt_path:
        save_checkpoint(cfg.ckpt_path, model, optimizer, step=cfg.steps, history=history.to_dict())
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
