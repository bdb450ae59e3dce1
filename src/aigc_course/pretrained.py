"""Load-or-train: small pretrained weights shipped with the package, and retraining them.

Taught in book/setup.md ("Shipped weights"). Every entry is two files in ``weights/``:

* ``<name>.safetensors``: the tensors (no pickle, so loading cannot run code);
* ``<name>.json``: the card: architecture and config, the exact training command, the SHA-256
  of the training data, measured metrics, time and hardware;
* ``<name>.tokenizer.json`` for text models: the vocabulary the model was trained with, so that
  it is never decoded with another model's vocabulary.

``python -m aigc_course.train <name>`` retrains an entry; its output goes to the user's cache
(``~/.cache/aigc_course/weights``), which :func:`load_pretrained` reads before the shipped
copy, so a retrained model replaces the shipped one everywhere.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from aigc_course.checkpoint import CheckpointError, atomic_save_tensors, load_tensors
from aigc_course.data.download import cache_dir

SHIPPED_DIR = Path(__file__).parent / "weights"


def user_weights_dir() -> Path:
    return cache_dir() / "weights"


def list_pretrained() -> list[str]:
    """Names of the shipped (and retrained) weights."""
    names = {p.stem for d in (SHIPPED_DIR, user_weights_dir()) if d.is_dir() for p in d.glob("*.json")
             if not p.name.endswith(".tokenizer.json")}
    return sorted(names)


def find_weights(name: str) -> tuple[Path, Path]:
    """(safetensors path, card path) of ``name``: a retrained copy first, then the shipped one."""
    for d in (user_weights_dir(), SHIPPED_DIR):
        w, c = d / f"{name}.safetensors", d / f"{name}.json"
        if w.is_file() and c.is_file():
            return w, c
    known = ", ".join(list_pretrained()) or "none"
    raise CheckpointError(
        f"No pretrained weights named {name!r}. Known: {known}. Train them with "
        f"`python -m aigc_course.train {name}` if a recipe of that name exists."
    )


def load_card(name: str) -> dict:
    return json.loads(find_weights(name)[1].read_text(encoding="utf-8"))


def load_pretrained(name: str, device: str | torch.device | None = None):
    """Build the model described by the card of ``name``, load its weights; return (model, card)."""
    from aigc_course.models import build_model

    weights, card_path = find_weights(name)
    card = json.loads(card_path.read_text(encoding="utf-8"))
    model = build_model(card["arch"], card["config"])
    tensors, meta = load_tensors(weights)
    for key, source in json.loads(meta.get("tied", "{}")).items():  # re-attach tied weights
        if source in tensors:
            tensors[key] = tensors[source]
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        raise CheckpointError(
            f"{weights} does not fit the architecture in its card ({str(err).splitlines()[0]}). "
            f"Retrain with `python -m aigc_course.train {name}`."
        ) from err
    if device is not None:
        model.to(device)
    model.eval()
    return model, card


def load_tokenizer(name: str, which: str | None = None):
    """The tokenizer saved with the weights ``name``.

    A translation model has two (``which="src"`` and ``which="tgt"``: files
    ``<name>.src.tokenizer.json`` and ``<name>.tgt.tokenizer.json``).
    """
    from aigc_course.text.tokenizers import load_tokenizer_file

    weights, _ = find_weights(name)
    stem = name if which is None else f"{name}.{which}"
    path = weights.with_name(f"{stem}.tokenizer.json")
    if not path.is_file():
        raise CheckpointError(f"The weights {name!r} were saved without a tokenizer ({path} is missing).")
    return load_tokenizer_file(path)


def save_pretrained(model: torch.nn.Module, name: str, card: dict, out_dir: str | Path | None = None,
                    tokenizer=None) -> Path:
    """Write ``<name>.safetensors``, ``<name>.json`` and, if given, ``<name>.tokenizer.json``
    (``tokenizer`` may be a dict such as ``{"src": ..., "tgt": ...}``: one file per entry)."""
    out = Path(out_dir) if out_dir else user_weights_dir()
    for key in ("arch", "config", "train_command", "metrics"):
        if key not in card:
            raise ValueError(f"A weights card needs the key {key!r}.")
    state, tied = {}, {}
    seen: dict[tuple, str] = {}
    for key, t in model.state_dict().items():  # store tied weights (GPT's embedding = head) once
        ident = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if ident in seen:
            tied[key] = seen[ident]
        else:
            seen[ident], state[key] = key, t
    meta = {"name": name, "tied": json.dumps(tied)}
    path = atomic_save_tensors(state, out / f"{name}.safetensors", metadata=meta)
    from aigc_course.text.tokenizers import save_json

    tokenizers = tokenizer if isinstance(tokenizer, dict) else {None: tokenizer}
    for which, tok in tokenizers.items():  # {"src": ..., "tgt": ...} for a translation model
        if tok is not None:
            save_json(tok.to_dict(), out / f"{name if which is None else f'{name}.{which}'}.tokenizer.json")
    card_path = out / f"{name}.json"
    tmp = card_path.with_name(card_path.name + ".tmp")
    tmp.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, card_path)
    return path
