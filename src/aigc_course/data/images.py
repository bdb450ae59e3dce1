"""MNIST and Fashion-MNIST as tensors, read straight from the original IDX archives.

Taught in part 2, "Text and images as tensors". The reader below is the whole IDX format: a
big-endian header (magic number, then one 32-bit size per dimension) followed by raw uint8
values. torchvision's ``MNIST`` class reads the same files; :func:`torchvision_dataset` gives it
the course's files when torchvision is installed and working.
"""

from __future__ import annotations

import gzip
import shutil
import struct
import zlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .download import DataError, cache_dir, fetch, fetch_file
from .registry import dataset_info

FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

_MAGIC = {2049: 1, 2051: 3}  # labels: 1 dimension, images: 3 dimensions (n, rows, cols)
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not) into a uint8 array, checking its structure."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"{path} is not a readable IDX archive ({err}). Delete it and run again to fetch a "
            f"fresh copy."
        ) from err
    if len(raw) < 8:
        raise DataError(f"{path} is too short to be an IDX file. Delete it and run again.")
    magic = struct.unpack(">I", raw[:4])[0]
    if magic not in _MAGIC:
        raise DataError(f"{path} has magic number {magic}, not an MNIST IDX file (2049 or 2051).")
    ndim = _MAGIC[magic]
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    offset = 4 + 4 * ndim
    expected = offset + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(
            f"{path} holds {len(raw)} bytes but its header announces {expected}: the file is "
            f"truncated or corrupt. Delete it and run again."
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape)


def _check_image_dataset(name: str) -> str:
    key = dataset_info(name).name
    if key not in ("mnist", "fashion_mnist"):
        raise ValueError(f"{name!r} is not an image dataset; use 'mnist' or 'fashion_mnist'.")
    return key


@lru_cache(maxsize=8)
def load_images(name: str = "mnist", split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Images as uint8 (N, 28, 28) and labels as int64 (N,) for ``split`` 'train' or 'test'."""
    key = _check_image_dataset(name)
    if split not in _SPLIT_PREFIX:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    paths = fetch(key)
    prefix = _SPLIT_PREFIX[split]
    x = read_idx(paths[f"{prefix}-images-idx3-ubyte.gz"])
    y = read_idx(paths[f"{prefix}-labels-idx1-ubyte.gz"])
    if len(x) != len(y):
        raise DataError(f"{name} {split}: {len(x)} images but {len(y)} labels.")
    return torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64))


def image_tensors(name: str = "mnist", split: str = "train", scale: str = "[-1, 1]",
                  limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Float images (N, 1, 28, 28) scaled to ``scale`` ('[0, 1]' or '[-1, 1]') and labels (N,).

    Generators that end in tanh need '[-1, 1]' (the seed code of GAN chapter fed [0, 1] images
    to a tanh generator; the two ranges must match).
    """
    x, y = load_images(name, split)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    x = x.float().div(255.0).unsqueeze(1)  # (N, 28, 28) -> (N, 1, 28, 28)
    if scale.replace(" ", "") == "[-1,1]":
        x = x * 2 - 1
    elif scale.replace(" ", "") != "[0,1]":
        raise ValueError(f"scale must be '[0, 1]' or '[-1, 1]', got {scale!r}.")
    return x, y


def torchvision_dataset(name: str = "mnist", train: bool = True, transform=None):
    """torchvision's own MNIST / FashionMNIST class over the course's verified files.

    torchvision extracts the archives next to them, so the archives are linked into the cache
    first: nothing is written into a read-only mirror. Raises ImportError with advice when
    torchvision is missing or broken (a CPU-only torch with a CUDA torchvision fails at import).
    """
    key = _check_image_dataset(name)
    try:
        from torchvision import datasets
    except Exception as err:  # a mismatched torchvision raises RuntimeError at import
        raise ImportError(
            f"torchvision is not usable here ({err}). Use aigc_course.data.image_tensors "
            f"instead, or install a torchvision built for your torch version."
        ) from err
    info = dataset_info(key)
    root = cache_dir() / "torchvision"
    for remote in info.files:
        src = fetch_file(remote)
        dst = root / remote.path
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                dst.symlink_to(src.resolve())
            except OSError:
                shutil.copyfile(src, dst)
    cls = datasets.MNIST if key == "mnist" else datasets.FashionMNIST
    return cls(root=str(root), train=train, download=True, transform=transform)
