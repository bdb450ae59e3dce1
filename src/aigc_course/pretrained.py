"""Load-or-train: small pretrained weights shipped with the package, and retraining them.

Taught in book/setup.md ("Shipped weights"). Every entry is two files in ``weights/``:

* ``<name>.safetensors``: the tensors (no pickle, so loading cannot run code);
* ``<name>.json``: the card: architecture and config, the exact training command, the SHA-256
  of the training data, measured metrics, time and hardware, and the SHA-256 of the entry's
  own files (below);
* ``<name>.tokenizer.json`` for text models: the vocabulary the model was trained with, so that
  it is never decoded with another model's vocabulary (a translation model has two,
  ``<name>.src.tokenizer.json`` and ``<name>.tgt.tokenizer.json``).

``python -m aigc_course.train <name>`` retrains an entry; its output goes to the user's cache
(``~/.cache/aigc_course/weights``), which :func:`load_pretrained` reads before the shipped
copy, so a retrained model replaces the shipped one everywhere.

File hashes. safetensors has no checksum: a flipped byte inside the tensor data still loads, as
a wrong model. So the card records the SHA-256 of every file of its entry, the weights and the
tokenizers, in one field placed right after ``train_command``::

    "sha256": {"gpt_tang.safetensors": "<hex>", "gpt_tang.tokenizer.json": "<hex>"}

(the same shape as ``data.sha256``, which does this for the training data). :func:`save_pretrained`
writes the weights and tokenizers first, hashes them as they lie on disk, and writes the card
last, through a temporary file and a rename, so a card never lists a file that is not there yet.
Every file is checked when it is read: :func:`load_pretrained` checks the weights before it
builds the model, :func:`load_tokenizer` checks the tokenizer it loads. A mismatch raises
:class:`WeightsIntegrityError` (a :class:`~aigc_course.checkpoint.CheckpointError`) naming the
file and how to restore it: reinstall the package for a shipped file, or run the card's
``train_command`` for a retrained one. A card that has the field but does not list the file read
(say, a tokenizer left over from an earlier save) is refused the same way. A card without the
field, written by an older version of the course into a user's cache, still loads, with an
:class:`UnverifiedWeightsWarning` saying to retrain; every shipped card has the field (tests
check it; ``scripts/stamp_weight_hashes.py`` adds it). :func:`load_card` only reads the card.

Each file's digest is kept for the process, keyed by (path, size, mtime, inode), so loading the
same weights many times hashes them once (hashing all ~25 MB of shipped files takes about 0.15 s
on two CPU cores). A file rewritten in place with the same size within one tick of the file
system clock would keep its old digest in a running process. The hashes guard against damage,
not against tampering: whoever can change a file can change its card too.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import torch

from aigc_course.checkpoint import CheckpointError, atomic_save_tensors, load_tensors
from aigc_course.data.download import cache_dir, sha256sum

SHIPPED_DIR = Path(__file__).parent / "weights"


class WeightsIntegrityError(CheckpointError):
    """A file of a pretrained entry is not the one its card records (damaged, or from another save)."""


class UnverifiedWeightsWarning(UserWarning):
    """A card records no SHA-256 of its files (an older version wrote it): they load unchecked."""


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
    """The card of ``name`` (only read: its files are checked when they are loaded)."""
    return json.loads(find_weights(name)[1].read_text(encoding="utf-8"))


def entry_files(folder: str | Path, name: str) -> list[Path]:
    """The files of the entry ``name`` in ``folder`` other than its card: the weights, then the
    tokenizers (``<name>.tokenizer.json``, ``<name>.<which>.tokenizer.json``)."""
    folder = Path(folder)
    tokenizer = re.compile(rf"{re.escape(name)}(\.[^.]+)?\.tokenizer\.json")
    tokenizers = [p for p in folder.glob(f"{name}.*") if tokenizer.fullmatch(p.name)]
    weights = folder / f"{name}.safetensors"
    return ([weights] if weights.is_file() else []) + sorted(tokenizers)


def card_with_hashes(card: dict, hashes: dict[str, str]) -> dict:
    """A copy of ``card`` whose ``sha256`` field (file name -> SHA-256) is ``hashes``, placed right
    after ``train_command`` (or at the end if the card has none)."""
    out = {}
    for key, value in card.items():
        if key != "sha256":
            out[key] = value
        if key == "train_command":
            out["sha256"] = dict(hashes)
    out.setdefault("sha256", dict(hashes))
    return out


_digests: dict[tuple[str, int, int, int], str] = {}  # (path, size, mtime_ns, inode) -> sha256


def _file_sha256(path: Path, fresh: bool = False) -> str:
    """SHA-256 of ``path``, hashed once per version of the file in this process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    if fresh or key not in _digests:
        _digests[key] = sha256sum(path)
    return _digests[key]


def _how_to_restore(path: Path, card: dict, name: str) -> str:
    shipped = Path(SHIPPED_DIR).resolve()
    if path.parent.resolve() == shipped:
        root = shipped.parents[2]  # <clone>/src/aigc_course/weights, for an editable install
        if (root / ".git").exists():
            how = f"in this clone of the course: `git -C {root} checkout -- {path.resolve().relative_to(root)}`"
        else:
            how = "the way it was installed, e.g. `pip install --force-reinstall --no-deps .` in the course's folder"
        return f"It is a file shipped with the package: reinstall the package to restore it ({how})."
    command = card.get("train_command") or f"python -m aigc_course.train {name}"
    return (f"It was written by a retrain: run `{command}` (the card's train_command) to write it "
            f"again, or delete {path.parent / name}.* to use the shipped copy.")


def verify_file(path: str | Path, card: dict, card_path: str | Path) -> None:
    """Check ``path`` against the SHA-256 that ``card`` (read from ``card_path``) records for it.

    Raises :class:`WeightsIntegrityError` on a mismatch or if the card does not list the file;
    warns (:class:`UnverifiedWeightsWarning`) if the card records no hashes at all.
    """
    path, card_path = Path(path), Path(card_path)
    name = card_path.stem
    recorded = card.get("sha256")
    if recorded is None:
        command = card.get("train_command") or f"python -m aigc_course.train {name}"
        warnings.warn(UnverifiedWeightsWarning(
            f"{card_path} records no SHA-256 of its files (an older version of the course wrote it), "
            f"so {path} is loaded unchecked: a damaged file would give a wrong model. Retrain with "
            f"`{command}` to record them."), stacklevel=3)
        return
    if not isinstance(recorded, dict) or path.name not in recorded:
        listed = ", ".join(recorded) if isinstance(recorded, dict) else "its sha256 field is not a mapping"
        raise WeightsIntegrityError(
            f"{card_path} does not list {path.name} among its files ({listed}), so {path} was not "
            f"saved with these weights. {_how_to_restore(path, card, name)}")
    actual = _file_sha256(path)
    if actual != recorded[path.name]:
        raise WeightsIntegrityError(
            f"{path} is corrupt or was changed: its SHA-256 is {actual}, but its card {card_path} "
            f"records {recorded[path.name]}. {_how_to_restore(path, card, name)}")


def load_pretrained(name: str, device: str | torch.device | None = None):
    """Build the model described by the card of ``name``, load its weights; return (model, card)."""
    from aigc_course.models import build_model

    weights, card_path = find_weights(name)
    card = json.loads(card_path.read_text(encoding="utf-8"))
    verify_file(weights, card, card_path)  # before anything is built from it
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

    weights, card_path = find_weights(name)
    stem = name if which is None else f"{name}.{which}"
    path = weights.with_name(f"{stem}.tokenizer.json")
    if not path.is_file():
        raise CheckpointError(f"The weights {name!r} were saved without a tokenizer ({path} is missing).")
    verify_file(path, json.loads(card_path.read_text(encoding="utf-8")), card_path)
    return load_tokenizer_file(path)


def save_pretrained(model: torch.nn.Module, name: str, card: dict, out_dir: str | Path | None = None,
                    tokenizer=None) -> Path:
    """Write ``<name>.safetensors``, ``<name>.json`` and, if given, ``<name>.tokenizer.json``
    (``tokenizer`` may be a dict such as ``{"src": ..., "tgt": ...}``: one file per entry).

    The card is written last, atomically, with the SHA-256 of the files just written (``card``
    itself is not changed); returns the path of the weights. Under ``torchrun`` only rank 0
    writes; the other ranks wait for it at a barrier (chapter 5.15)."""
    from aigc_course.train.distributed import barrier, is_main_process

    out = Path(out_dir) if out_dir else user_weights_dir()
    for key in ("arch", "config", "train_command", "metrics"):
        if key not in card:
            raise ValueError(f"A weights card needs the key {key!r}.")
    if not is_main_process():
        barrier()  # until rank 0 has written every file
        return out / f"{name}.safetensors"
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

    written = [path]
    tokenizers = tokenizer if isinstance(tokenizer, dict) else {None: tokenizer}
    for which, tok in tokenizers.items():  # {"src": ..., "tgt": ...} for a translation model
        if tok is not None:
            written.append(out / f"{name if which is None else f'{name}.{which}'}.tokenizer.json")
            save_json(tok.to_dict(), written[-1])
    hashes = {p.name: _file_sha256(p, fresh=True) for p in written}  # as they lie on disk
    card_path = out / f"{name}.json"
    tmp = card_path.with_name(f"{card_path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(card_with_hashes(card, hashes), indent=2, ensure_ascii=False) + "\n",
                       encoding="utf-8")
        os.replace(tmp, card_path)
    finally:
        tmp.unlink(missing_ok=True)
    barrier()
    return path
