"""Data layer of the course: datasets by name, verified downloads, tensors ready to train on.

Taught in book/setup.md (section Data) and used from chapter 1.2 on: MNIST and Fashion-MNIST
(``images``), tinyshakespeare, the Tang poems and the English-Chinese pairs (``text``), the 2D toy
sets of chapters 2.1 and 2.3 (``toy``); ``registry`` names every file with its URL and SHA-256.
"""

from .download import (
    ChecksumError,
    DataError,
    DataUnavailableError,
    cache_dir,
    download,
    fetch,
    fetch_file,
    mirror_dir,
    sha256sum,
)
from .images import (
    DIGIT_NAMES,
    FASHION_CLASSES,
    image_tensors,
    load_images,
    read_idx,
    torchvision_dataset,
)
from .registry import DATASETS, DatasetInfo, RemoteFile, UnknownDatasetError, dataset_info
from .text import Poem, SentencePair, load_en_zh, load_tang_poems, load_text, train_val_split
from .toy import TOY_2D, toy_2d

__all__ = [
    "ChecksumError", "DataError", "DataUnavailableError", "cache_dir", "download", "fetch",
    "fetch_file", "mirror_dir", "sha256sum", "DIGIT_NAMES", "FASHION_CLASSES", "image_tensors",
    "load_images", "read_idx", "torchvision_dataset", "DATASETS", "DatasetInfo", "RemoteFile",
    "UnknownDatasetError", "dataset_info", "Poem", "SentencePair", "load_en_zh",
    "load_tang_poems", "load_text", "train_val_split", "TOY_2D", "toy_2d",
]
