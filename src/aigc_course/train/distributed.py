"""Data-parallel training on ``torch.distributed``: one process per device, launched by ``torchrun``.

Taught in chapter 5.15 ("Training beyond one device"). The idea fits in one line: the loss of a
global batch is the mean of the losses of its W equal shards, so its gradient is the mean of the
W shard gradients. Each process (a *rank*) holds a full copy of the model, computes the gradient
of its own shard, and an all-reduce averages the gradients so that every copy takes the same
optimizer step. ``torch.nn.parallel.DistributedDataParallel`` (DDP) does the all-reduce, bucket by
bucket, while the backward pass still runs; :func:`aigc_course.train.fit` wraps the model in it by
itself when a process group with more than one process is initialised. This module holds the
small pieces around it:

* :func:`init_distributed` reads what ``torchrun`` puts in the environment (``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``), picks ``nccl`` on CUDA (one GPU
  per process, ``cuda:LOCAL_RANK``) and ``gloo`` on the CPU, and sets the collective timeout so a
  rank that dies or stalls ends the job with an error instead of a hang;
* :func:`shard_batch` cuts a rank's share out of a global batch (a contiguous block of rows);
* :func:`barrier`, :func:`is_main_process`, :func:`cleanup`: only rank 0 logs and writes files,
  the other ranks wait for it;
* :func:`torchrun` launches ``python -m torch.distributed.run`` on a free local port (tests, notebooks).

Launch a recipe on N devices of one machine with ``torchrun --nproc_per_node N -m aigc_course.train
NAME``; on M machines, run on each ``torchrun --nnodes M --nproc_per_node N --rdzv-backend c10d
--rdzv-endpoint HOST:29400 -m aigc_course.train NAME`` (HOST: any one of them). Batch sizes of the
recipes stay global: each of the W = M x N processes trains on B / W rows of every batch.
"""

from __future__ import annotations

import datetime
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from aigc_course.runtime import get_device

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistInfo:
    """Who this process is: its rank among ``world_size`` processes, its rank on this machine and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, evaluates and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when a process group with more than one process is running (``fit`` then uses DDP)."""
        return self.world_size > 1 and dist.is_available() and dist.is_initialized()


def launched_by_torchrun() -> bool:
    """True when ``torchrun`` (or another launcher that sets RANK, WORLD_SIZE and LOCAL_RANK) started us."""
    return all(v in os.environ for v in _TORCHRUN_VARS)


def default_backend(device: torch.device | str) -> str:
    """``nccl`` for CUDA devices, ``gloo`` otherwise (CPU)."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def init_distributed(backend: str | None = None, timeout_s: float = 120.0) -> DistInfo:
    """Join the process group that ``torchrun`` set up and return this process's :class:`DistInfo`.

    Without ``torchrun`` (a plain ``python`` run, a notebook) nothing is initialised and the result
    is ``DistInfo(0, 1, 0, get_device())``. On CUDA each process takes the GPU ``LOCAL_RANK``
    (``torch.cuda.set_device``). ``timeout_s`` bounds every collective: a rank that waits longer
    for the others (one crashed, or hangs) raises instead of waiting for ever.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}.")
    if not launched_by_torchrun():
        return DistInfo(0, 1, 0, get_device())
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    device = get_device()  # cuda:LOCAL_RANK under torchrun when CUDA is there
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPUs are visible: "
                               f"start at most one process per GPU (--nproc_per_node {torch.cuda.device_count()}).")
        torch.cuda.set_device(device)
    backend = backend or default_backend(device)
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s),
                                rank=rank, world_size=world_size)
    return DistInfo(rank, world_size, local_rank, device)


def dist_info() -> DistInfo:
    """This process's :class:`DistInfo` (rank 0 of 1 when no process group is initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo(0, 1, 0, get_device())
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), get_device())


def is_main_process() -> bool:
    """True on rank 0, and in any single-process run."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def barrier() -> None:
    """Wait until every rank gets here (a no-op without a process group of several processes)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def cleanup() -> None:
    """Leave the process group (a no-op if none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard_batch(batch, rank: int, world_size: int):
    """Rank ``rank``'s share of a global ``batch``: rows ``[rank * B/W, (rank + 1) * B/W)`` of every tensor.

    ``batch`` is a tensor (B, ...) or tensors nested in tuples / lists / dicts, all with the same
    number of rows B, which must be a multiple of ``world_size``. Zero-dimensional tensors and
    non-tensors (a string, a number) are shared, not cut. A contiguous block (not rows ``rank::W``)
    keeps each shard's rows in order, so that shards of shards (gradient accumulation) are blocks too.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"Need 0 <= rank < world_size, got rank {rank} and world_size {world_size}.")
    rows = {len(t) for t in _tensors(batch) if t.dim() > 0}
    if len(rows) > 1:
        raise ValueError(f"The tensors of a batch must all have the same number of rows to be sharded, got {sorted(rows)}.")
    if not rows:
        raise ValueError("shard_batch found no tensor with a batch dimension in the batch.")
    (n,) = rows
    if n % world_size:
        raise ValueError(f"A batch of {n} rows cannot be split into {world_size} equal shards: make the global "
                         f"batch size a multiple of {world_size} (processes x accumulation steps).")
    size = n // world_size
    return _slice(batch, rank * size, (rank + 1) * size)


def _tensors(batch):
    if torch.is_tensor(batch):
        yield batch
    elif isinstance(batch, (list, tuple)):
        for b in batch:
            yield from _tensors(b)
    elif isinstance(batch, dict):
        for b in batch.values():
            yield from _tensors(b)


def _slice(batch, start: int, stop: int):
    if torch.is_tensor(batch):
        return batch[start:stop] if batch.dim() > 0 else batch
    if isinstance(batch, (list, tuple)):
        parts = [_slice(b, start, stop) for b in batch]
        return type(batch)(*parts) if hasattr(batch, "_fields") else type(batch)(parts)  # namedtuples too
    if isinstance(batch, dict):
        return {k: _slice(v, start, stop) for k, v in batch.items()}
    return batch


# The pieces fit() uses under DDP ----------------------------------------------------------------

class LossModule(torch.nn.Module):
    """``forward(batch) = loss_fn(model, batch)``: wrapped in DDP, any ``loss_fn`` works, also one that
    calls model methods other than ``forward`` (``m.loss(b)``, ``m(*b)[1]``), since DDP only sees
    this module's forward and hooks the parameters' gradients."""

    def __init__(self, model: torch.nn.Module, loss_fn):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch):
        return self.loss_fn(self.model, batch)


def data_parallel(module: torch.nn.Module, device: torch.device,
                  find_unused_parameters: bool = False) -> torch.nn.parallel.DistributedDataParallel:
    """``module`` in DDP on ``device`` (rank 0's weights and buffers are broadcast to every rank)."""
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids,
                                                     find_unused_parameters=find_unused_parameters)


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of ``x`` over all ranks (``x`` itself without a process group); gloo has no AVG, so SUM / W."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / dist.get_world_size()


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank (pickled; for small things such as evaluation results)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` without a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def reseed_rank(rank: int) -> None:
    """Give each rank its own stream of the global random generator (dropout, noise drawn inside a
    model): one draw shared by all ranks (all start from the same seed), plus the rank."""
    base = int(torch.randint(0, 2**62, (1,)).item())
    torch.manual_seed(base + 7919 * rank)


def free_port() -> int:
    """A TCP port that is free on this machine right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], nproc: int = 2, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``torchrun --nproc_per_node nproc ARGS`` on this machine and return the finished process.

    ``args`` is what follows the launcher's options: ``["-m", "aigc_course.train", "gpt_shakespeare",
    "--fast"]`` or ``["script.py", "--flag"]``. The rendezvous uses a free local port, so several
    launches can run at once. ``env`` adds to (or overrides) this process's environment; each worker
    gets ``OMP_NUM_THREADS=1`` unless ``env`` sets it. stdout and stderr are captured as text. After
    ``timeout`` seconds the launcher and all its workers are killed and ``subprocess.TimeoutExpired``
    is raised.
    """
    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {nproc}.")
    if isinstance(args, str):
        raise TypeError("args must be a list of strings, e.g. ['-m', 'aigc_course.train', 'gpt_shakespeare'].")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--nnodes", "1",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), *map(str, args)]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
                            start_new_session=True)  # its own process group: a timeout kills the workers too
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise subprocess.TimeoutExpired(cmd, timeout, output=out, stderr=err) from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
