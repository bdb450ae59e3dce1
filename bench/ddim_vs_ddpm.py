"""Benchmark: DDPM ancestral sampling (1000 steps) against DDIM with 10/20/50/100 steps (chapter 5.9).

With the shipped ``ddpm_mnist`` U-Net (its EMA weights), draw ``--n`` samples with each sampler
from the same starting noise (batch i of 50 always starts from the seed ``1000 + i``), then measure

* sample quality: FID and KID between the samples and the 10,000 MNIST test digits, both on the
  64-d penultimate features of the course classifier ``mnist_cnn``
  (:mod:`aigc_course.metrics.image`); as a floor, the same metrics for ``--n`` real training
  digits (what a perfect generator would score with this many samples);
* cost: the wall time of the whole run on one thread, and the time for 64 samples with
  ``--timing-threads`` threads (the course's target: DDIM-50 <= 10 s for 64 samples on a
  2-core CPU). DDPM-1000 is timed over 100 of its steps and scaled by 10 (every step costs one
  network call and the same arithmetic).

The course's targets: DDIM-50's FID within 10% of DDPM-1000's, and 64 DDIM-50 samples in <= 10 s.

``--ddim-steps 10 20 50 100 1000`` adds deterministic DDIM through every timestep: as many network
calls as DDPM-1000 and the same noises, so it separates the cost of skipping steps from that of
dropping the fresh noise (the shipped results include it; it doubles the run time).

Samples are cached batch by batch (``--cache``), so an interrupted run resumes where it stopped,
and ``--workers 2`` processes (``--worker 0`` and ``--worker 1``, one thread each) can share the
sampling; worker 0 waits for the other, then measures and writes the results.

Usage: ``OMP_NUM_THREADS=1 python bench/ddim_vs_ddpm.py [--n 1000] [--out FILE]``

The results go to ``src/aigc_course/studies/results/ddim_vs_ddpm.json`` unless ``--out`` says
otherwise: package data that ships with the course package and that chapter 5.9 reads with
``aigc_course.studies.benchmarks.load_benchmark("ddim_vs_ddpm")``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from aigc_course.data import image_tensors
from aigc_course.diffusion import NoiseSchedule, ScheduleConfig, ddpm_step, sample_ddim, sample_ddpm
from aigc_course.pretrained import find_weights, load_pretrained
from aigc_course.runtime import device_label

# The shipped results, in the source tree next to the loader (aigc_course.studies.benchmarks).
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "aigc_course" / "studies" / "results" / "ddim_vs_ddpm.json"


def sample(model, schedule, method: str, n: int, batch: int, cache: Path, worker: int = 0, workers: int = 1,
           seed0: int = 1000, cached_only: bool = False) -> tuple[torch.Tensor | None, float]:
    """``n`` samples in batches; batch i starts from the noise of seed ``seed0 + i``.

    Every batch is cached as its own file, so that ``workers`` processes can share the batches
    (worker k draws the batches i with i % workers == k) and a run can resume. Returns all
    samples and the summed one-thread seconds, once every batch exists (worker 0 waits).
    ``cached_only``: draw nothing; return (None, 0) unless every batch is already cached."""
    starts = list(range(0, n, batch))
    paths = [cache / f"{method}_n{n}_b{batch}_{i:03d}.pt" for i in range(len(starts))]
    for i, start in enumerate(starts):
        if cached_only or i % workers != worker or paths[i].is_file():
            continue
        b = min(batch, n - start)
        g = torch.Generator().manual_seed(seed0 + i)
        t0 = time.perf_counter()
        with torch.no_grad():
            if method == "ddpm1000":
                x = sample_ddpm(model, schedule, (b, 1, 28, 28), generator=g)
            else:
                x = sample_ddim(model, schedule, (b, 1, 28, 28), num_steps=int(method[4:]), generator=g)
        tmp = paths[i].with_suffix(".tmp")
        torch.save({"x": x.clamp(-1, 1), "seconds": time.perf_counter() - t0}, tmp)
        tmp.replace(paths[i])
        print(f"  {method}: batch {i + 1}/{len(starts)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    if worker != 0:
        return None, 0.0
    if cached_only and not all(p.is_file() for p in paths):
        print(f"{method}: {sum(p.is_file() for p in paths)}/{len(paths)} batches cached, left out", flush=True)
        return None, 0.0
    while not all(p.is_file() for p in paths):  # the other workers' batches
        time.sleep(10)
    parts = [torch.load(p) for p in paths]
    return torch.cat([d["x"] for d in parts]), sum(d["seconds"] for d in parts)


@torch.no_grad()
def time_64(model, schedule, method: str, repeats: int = 2) -> float:
    """Seconds to draw 64 samples (best of ``repeats``); DDPM-1000: 100 steps x 10."""
    best = float("inf")
    for r in range(repeats):
        g = torch.Generator().manual_seed(r)
        t0 = time.perf_counter()
        if method == "ddpm1000":
            x = torch.randn(64, 1, 28, 28, generator=g)
            for t in range(schedule.num_steps - 1, schedule.num_steps - 101, -1):
                eps = model(x, torch.full((64,), t))
                x = ddpm_step(schedule, x, t, eps, noise=torch.randn(x.shape, generator=g), clip_x0=True)
            seconds = (time.perf_counter() - t0) * schedule.num_steps / 100
        else:
            sample_ddim(model, schedule, (64, 1, 28, 28), num_steps=int(method[4:]), generator=g)
            seconds = time.perf_counter() - t0
        best = min(best, seconds)
    return best


def quality(f, f_ref) -> dict:
    """FID and KID (mean and std over 100 subsets of 1000) of features f against f_ref."""
    from aigc_course.metrics.image import fid, kid

    kid_mean, kid_std = kid(f, f_ref)
    return {"fid": round(fid(f, f_ref), 3), "kid": round(kid_mean, 5), "kid_std": round(kid_std, 5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="samples per sampler")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--workers", type=int, default=1, help="processes sharing the sampling")
    ap.add_argument("--worker", type=int, default=0, help="this process's index; 0 also measures and writes")
    ap.add_argument("--ddim-steps", type=int, nargs="+", default=[10, 20, 50, 100])
    ap.add_argument("--n-ref", type=int, default=10_000, help="MNIST test digits of the reference set")
    ap.add_argument("--timing-threads", type=int, default=2)
    ap.add_argument("--cache", default="/tmp/ddim_vs_ddpm_cache")
    ap.add_argument("--cached-only", action="store_true",
                    help="draw nothing: score the samplers whose batches are all cached (a partial result)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="where to write the results (JSON)")
    args = ap.parse_args()

    threads = torch.get_num_threads()
    model, card = load_pretrained("ddpm_mnist")
    schedule = NoiseSchedule(ScheduleConfig(**card["schedule"]))
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    methods = [f"ddim{k}" for k in args.ddim_steps] + ["ddpm1000"]  # the cheap ones first

    # 1. samples (the long part: DDPM-1000 calls the network 1000 times per batch)
    samples, seconds = {}, {}
    for m in methods:
        samples[m], seconds[m] = sample(model, schedule, m, args.n, args.batch, cache, args.worker, args.workers,
                                        cached_only=args.cached_only)
        if samples[m] is None:
            del samples[m]
        elif args.worker == 0:
            print(f"{m}: {seconds[m]:.0f} s for {args.n} samples on {threads} thread(s)", flush=True)
    if args.worker != 0:
        return
    all_methods, methods = methods, [m for m in methods if m in samples]

    # 2. time per 64 samples with the timing threads (the course's CPU target)
    torch.set_num_threads(args.timing_threads)
    load_before = os.getloadavg()[0]
    per64 = {m: round(time_64(model, schedule, m), 2) for m in all_methods}
    torch.set_num_threads(threads)
    print("seconds per 64 samples:", per64, flush=True)

    # 3. quality: FID / KID on mnist_cnn features against the MNIST test digits
    from aigc_course.metrics.image import features

    x_ref, _ = image_tensors("mnist", "test", limit=args.n_ref)
    x_real, _ = image_tensors("mnist", "train", limit=args.n)
    f_ref = features(x_ref)
    rows = {"real_train_digits": quality(features(x_real), f_ref)}
    for m in methods:
        rows[m] = {**quality(features(samples[m]), f_ref), "seconds_total_1thread": round(seconds[m], 1),
                   f"seconds_per_64_{args.timing_threads}threads": per64[m],
                   "network_calls_per_sample": 1000 if m == "ddpm1000" else int(m[4:])}
    for m in set(all_methods) - set(methods):  # not sampled (a partial run): timing only
        rows[m] = {f"seconds_per_64_{args.timing_threads}threads": per64[m],
                   "network_calls_per_sample": 1000 if m == "ddpm1000" else int(m[4:])}

    ratio = rows["ddim50"]["fid"] / rows["ddpm1000"]["fid"] if {"ddim50", "ddpm1000"} <= rows.keys() else None
    result = {
        "benchmark": "DDPM-1000 vs DDIM on MNIST (bench/ddim_vs_ddpm.py)",
        "complete": methods == all_methods,
        "model": "ddpm_mnist",
        "weights": str(find_weights("ddpm_mnist")[0].name),
        "model_test_eps_loss": card["metrics"].get("test_eps_loss"),
        "n_samples": args.n,
        "n_reference": len(x_ref),
        "reference": "MNIST test digits",
        "features": "mnist_cnn penultimate layer (64-d)",
        "seeds": "batch i of 50 starts from torch.Generator().manual_seed(1000 + i); same start noise for all samplers",
        "clip_x0": True,
        "results": rows,
        "targets": {
            "ddim50_fid_over_ddpm1000_fid": round(ratio, 3) if ratio else None,
            "ddim50_fid_within_10pct": bool(ratio is not None and ratio <= 1.10),
            "ddim50_seconds_per_64": per64.get("ddim50"),
            "ddim50_64_samples_within_10s": bool(per64.get("ddim50", 1e9) <= 10.0),
        },
        "ddpm1000_per64_note": "timed over 100 steps and scaled by 10",
        "sampling_threads": threads,
        "timing_threads": args.timing_threads,
        "load_average_at_timing": round(load_before, 2),
        "timing_note": "best of 2 runs; the machine is shared, so a load average above the thread count inflates times",
        "hardware": device_label("cpu"),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
