"""The command line that retrains the shipped weights: ``python -m aigc_course.train NAME``.

Taught in book/setup.md (section "Shipped weights") and chapter 5.15. Each name is a recipe of
:mod:`aigc_course.recipes`; the command writes ``NAME.safetensors`` and its card ``NAME.json``.
Under ``torchrun --nproc_per_node N -m aigc_course.train NAME`` the same recipe trains with data
parallelism on N processes (gloo on CPUs, nccl on GPUs, one process per GPU): batch sizes stay
global, and only rank 0 prints and writes the files.
It lives apart from the training loop so that the loop never imports the recipes.
"""

from __future__ import annotations

import argparse
import sys

from aigc_course.recipes import RECIPES, run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aigc_course.train", description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=sorted(RECIPES), help="which weights to (re)train")
    parser.add_argument("--out", default=None, help="output folder (default: ~/.cache/aigc_course/weights)")
    parser.add_argument("--fast", action="store_true", help="a few steps only, to check the recipe runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipe", default=None, choices=["cpu", "gpu"],
                        help="the CPU recipe (minutes, the shipped weights) or the full GPU recipe, "
                             "where the model has both")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="under torchrun: seconds a process waits for the others before the job fails")
    args = parser.parse_args(argv)
    from aigc_course.train.distributed import cleanup, init_distributed, launched_by_torchrun

    if not launched_by_torchrun():
        card = run(args.name, args.out, args.fast, args.seed, args.recipe)
        print(f"{args.name}: {card['metrics']}  ({card['train_seconds']:.0f} s on {card['device']})")
        return
    from torch.distributed.elastic.multiprocessing.errors import record

    info = init_distributed(timeout_s=args.timeout)
    try:
        # record: the launcher's summary then shows this rank's exception, not only its exit code
        card = record(run)(args.name, args.out, args.fast, args.seed, args.recipe)
    except BaseException as err:
        print(f"[rank {info.rank}/{info.world_size}] {args.name} failed: {type(err).__name__}: {err}",
              file=sys.stderr, flush=True)
        raise
    if info.is_main:
        print(f"{args.name}: {card['metrics']}  ({card['train_seconds']:.0f} s on {card['device']}, "
              f"{info.world_size} processes)")
    cleanup()


if __name__ == "__main__":
    main(sys.argv[1:])
