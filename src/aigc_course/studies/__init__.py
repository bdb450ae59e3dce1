"""Figure-making studies: looking inside a model while it runs.

* ``diffusion_internals``: forward strips, sampling trajectories (the package samplers with a
  callback), exact optimal denoisers of 1D data (3.7, 4.5);
* ``guidance``: classifier-free guidance sweeps, scored by accuracy, FID and diversity (5.10, 5.11);
* ``decoding_playground``: the next-token distribution under temperature, top-k and top-p (3.3);
* ``benchmarks``: the shipped results of the benchmark scripts in ``bench/`` (``results/``, package
  data), which chapters 5.2 and 5.9 tabulate and plot;
* ``ddp``: one process against several under torchrun: throughput, time to a loss, and the
  memory arithmetic of DDP, ZeRO and FSDP (5.15).
"""
