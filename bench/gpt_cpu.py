"""Benchmark: wall time to reach nanoGPT's CPU validation loss on tinyshakespeare (chapter 5.2).

Trains, in one process and one after the other, the character GPT of

* nanoGPT's published CPU recipe for ``shakespeare_char`` (Karpathy, nanoGPT README: 4 layers,
  4 heads, 128 wide, block 64, batch 12, lr 1e-3 -> 1e-4, warm-up 100, 2000 iterations, dropout
  0, AdamW betas (0.9, 0.99), weight decay 0.1 on matrices, no bias, no compile), and
* the course's CPU recipe (``COURSE_CPU`` below),

and prints the training wall time each needs to reach the threshold: the validation loss the
nanoGPT recipe itself reaches after its 2000 iterations in the same run (nanoGPT reports 1.88 with
a noisy 20-batch estimate; on this machine it is about 1.92 with 200 batches).

Fair by construction: the same data (nanoGPT's 90/10 character split), the same model code
(:class:`aigc_course.models.GPT`), the same number of CPU threads, and one fixed set of 200 x 12
validation windows of 64 characters (the reference's block size) for every evaluation of both
models. The clock runs only while training (evaluations are excluded for both), and a recipe is
credited with the first evaluation at or under the threshold (evaluations every ``eval_every``
steps, so the time is an upper bound).

Usage: ``python bench/gpt_cpu.py [--threads N] [--out results.json]``

A full run writes its results to ``src/aigc_course/studies/results/gpt_cpu.json``, package data
that ships with the course package and that chapter 5.2 reads with
``aigc_course.studies.benchmarks.load_benchmark("gpt_cpu")``; ``--out`` writes elsewhere. A tuning
run (``--course-only`` or ``--set``) writes only where ``--out`` says.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from aigc_course.data import load_text, train_val_split
from aigc_course.models import GPT, GPTConfig
from aigc_course.text.batches import get_batch
from aigc_course.text.tokenizers import CharTokenizer

# The shipped results, in the source tree next to the loader (aigc_course.studies.benchmarks).
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "aigc_course" / "studies" / "results" / "gpt_cpu.json"


@dataclass(frozen=True)
class Recipe:
    name: str
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    batch_size: int = 12
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: int = 2000
    max_iters: int = 2000
    weight_decay: float = 0.1
    beta2: float = 0.99
    grad_clip: float = 1.0
    decay: str = "cosine"  # "cosine" (nanoGPT) or "linear" (a straight line from lr to min_lr)
    bf16: bool = False  # autocast matmuls to bfloat16 (uses AMX/AVX512-BF16 where the CPU has it)
    compile: bool = False
    eval_every: int = 100


NANOGPT_CPU = Recipe("nanoGPT CPU recipe")
# The course's recipe keeps nanoGPT's width, block and batch (batch 12 was the most sample-efficient
# of 12/24/32 in our sweeps, and a CPU's time per token hardly falls with a larger batch). It
# changes the optimisation, a 6x higher peak learning rate, a shorter warm-up and a cosine decay
# over 1,000 iterations (then min_lr), and the depth: 3 layers instead of 4 cost a quarter less
# per step and, at this budget, need hardly more steps.
COURSE_CPU = Recipe("course CPU recipe", n_layer=3, lr=6e-3, min_lr=6e-4, warmup_iters=50,
                    lr_decay_iters=1000, max_iters=1400, eval_every=25)


def lr_at(it: int, r: Recipe) -> float:
    """nanoGPT's schedule: linear warm-up, cosine (or linear) decay to min_lr at lr_decay_iters,
    then flat."""
    if it < r.warmup_iters:
        return r.lr * (it + 1) / (r.warmup_iters + 1)
    if it > r.lr_decay_iters:
        return r.min_lr
    ratio = (it - r.warmup_iters) / (r.lr_decay_iters - r.warmup_iters)
    if r.decay == "linear":
        return r.min_lr + (1.0 - ratio) * (r.lr - r.min_lr)
    return r.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (r.lr - r.min_lr)


def run(r: Recipe, train: torch.Tensor, val_windows, vocab_size: int, threshold: float | None, seed: int = 1337):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size, r.block_size, r.n_layer, r.n_head, r.n_embd, dropout=0.0, bias=False))
    opt = model.configure_optimizer(r.lr, r.weight_decay, betas=(0.9, r.beta2))
    fwd = torch.compile(model) if r.compile else model
    amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if r.bf16 else contextlib.nullcontext
    gen = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def val_loss() -> float:
        model.eval()
        with amp():
            losses = [float(fwd(x, y)[1]) for x, y in val_windows]
        model.train()
        return sum(losses) / len(losses)

    curve, seconds, reached = [], 0.0, None
    for it in range(r.max_iters):
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = lr_at(it, r)
        x, y = get_batch(train, r.block_size, r.batch_size, gen)
        with amp():
            _, loss = fwd(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), r.grad_clip)
        opt.step()
        seconds += time.perf_counter() - t0
        if (it + 1) % r.eval_every == 0 or it + 1 == r.max_iters:
            v = val_loss()
            curve.append({"iter": it + 1, "seconds": round(seconds, 2), "val": round(v, 4)})
            print(f"  {r.name}: iter {it + 1:5d}  {seconds:7.1f} s  val {v:.4f}", flush=True)
            if threshold is not None and v <= threshold and reached is None:
                reached = curve[-1]
                break
    return {"recipe": asdict(r), "curve": curve, "reached": reached, "train_seconds": round(seconds, 2),
            "parameters": model.num_params()}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--eval-batches", type=int, default=200)
    p.add_argument("--out", default=None,
                   help=f"write the results as JSON here (default for a full run: {DEFAULT_OUT})")
    p.add_argument("--course-only", type=float, default=None, metavar="THRESHOLD",
                   help="skip the reference and use this threshold (for tuning only)")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="override fields of the course recipe, e.g. --set lr=4e-3 max_iters=800")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    text = load_text("tinyshakespeare")
    tok = CharTokenizer.from_text(text)
    data = torch.tensor(tok.encode(text), dtype=torch.long)
    train, val = train_val_split(data, 0.1)
    g = torch.Generator().manual_seed(0)
    val_windows = [get_batch(val, 64, 12, g) for _ in range(args.eval_batches)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")

    if args.course_only is None:
        ref = run(NANOGPT_CPU, train, val_windows, tok.vocab_size, None)
        threshold = ref["curve"][-1]["val"]
        ref["reached"] = next(c for c in ref["curve"] if c["val"] <= threshold)
    else:
        ref, threshold = None, args.course_only
    print(f"threshold: val <= {threshold:.4f}")
    course = COURSE_CPU
    for item in args.set:
        field, value = item.split("=", 1)
        kind = type(getattr(course, field))
        course = replace(course, **{field: value.lower() == "true" if kind is bool else kind(float(value)) if kind is int else kind(value)})
    print(f"course recipe: {course}")
    ours = run(course, train, val_windows, tok.vocab_size, threshold)
    result = {"threshold": threshold, "reference": ref, "course": ours, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "eval_windows": f"{args.eval_batches} x 12 x 64 characters"}
    if ref and ours["reached"]:
        t_ref, t_ours = ref["reached"]["seconds"], ours["reached"]["seconds"]
        result["ratio"] = round(t_ours / t_ref, 3)
        print(f"\ntime to val <= {threshold:.4f}: nanoGPT {t_ref:.1f} s, course {t_ours:.1f} s, "
              f"ratio {t_ours / t_ref:.2f}x")
    elif not ours["reached"]:
        print(f"\nthe course recipe did not reach {threshold:.4f} (best {min(c['val'] for c in ours['curve']):.4f})")
    tuning = args.course_only is not None or bool(args.set)
    out = Path(args.out) if args.out else None if tuning else DEFAULT_OUT
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w") as f:
            json.dump(result, f, indent=1)
        print(f"results written to {out}")
    return result


if __name__ == "__main__":
    main()
