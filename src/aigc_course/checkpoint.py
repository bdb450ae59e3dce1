"""Saving and loading training state in safetensors, atomically and without pickle.

Taught in book/setup.md and used by :func:`aigc_course.train.fit`. A checkpoint is one
``.safetensors`` file: the model's tensors under ``model.*``, the optimizer's tensors under
``optim.*``, and everything that is not a tensor (step, loss history, optimizer
hyper-parameters) as JSON in the file's metadata. Loading never runs pickle, so a checkpoint
from an untrusted source cannot execute code.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not fit the model."""


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: str | Path,
                        metadata: dict[str, str] | None = None) -> Path:
    """Write tensors to ``path`` via a temporary file, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        # safetensors wants contiguous tensors that share no memory (weight tying shares it).
        clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
        save_file(clean, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o644)  # readable by all, like any installed package file
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read tensors and metadata; a clear :class:`CheckpointError` for missing or corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"No checkpoint at {path}.")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a readable safetensors file ({err}). It may be truncated or "
            f"corrupt: delete it and train again (or re-install the package for shipped weights)."
        ) from err
    return tensors, metadata


def save_checkpoint(path: str | Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, **state) -> Path:
    """Save model (+ optimizer) tensors and JSON-serialisable ``state`` (step, history, ...)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    meta = {"state": json.dumps(state)}
    if optimizer is not None:
        opt = optimizer.state_dict()
        for pid, pstate in opt["state"].items():
            for key, value in pstate.items():
                if torch.is_tensor(value):
                    tensors[f"optim.{pid}.{key}"] = value
        scalars = {
            str(pid): {k: v for k, v in s.items() if not torch.is_tensor(v)}
            for pid, s in opt["state"].items()
        }
        meta["optim"] = json.dumps({"param_groups": opt["param_groups"], "scalars": scalars})
    return atomic_save_tensors(tensors, path, metadata=meta)


def load_checkpoint(path: str | Path, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer | None = None,
                    map_location: str | torch.device = "cpu") -> dict:
    """Load what :func:`save_checkpoint` wrote into ``model`` (and ``optimizer``); return state."""
    tensors, meta = load_tensors(path)
    model_sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(model_sd)
    except RuntimeError as err:
        raise CheckpointError(
            f"{path} does not fit this model ({str(err).splitlines()[0]}). Was it saved from a "
            f"model with another configuration?"
        ) from err
    if optimizer is not None:
        if "optim" not in meta:
            raise CheckpointError(f"{path} holds no optimizer state; cannot resume training from it.")
        saved = json.loads(meta["optim"])
        state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, pid, name = key.split(".", 2)
                state.setdefault(int(pid), {})[name] = value.to(map_location)
        for pid, scalars in saved["scalars"].items():
            state.setdefault(int(pid), {}).update(scalars)
        optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
    return json.loads(meta.get("state", "{}"))


def state_text(state: torch.Tensor) -> str:
    """A generator's state (a uint8 tensor, ``g.get_state()``) as text, for a checkpoint's JSON."""
    return base64.b64encode(state.numpy().tobytes()).decode("ascii")


def text_state(text: str) -> torch.Tensor:
    """Undo :func:`state_text`: the uint8 tensor for ``g.set_state``."""
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)
