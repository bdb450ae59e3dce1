"""The course's datasets by name: canonical URL, local path and SHA-256 of every file.

Taught in "How to use this course" (book/setup.md, section Data). The relative paths follow
torchvision's layout (``MNIST/raw/train-images-idx3-ubyte.gz``) so a folder prepared for one
works for the other. Checksums were computed on the canonical files (see each SOURCE.md of the
course's data mirror).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: where it lives on the web and inside the data folder."""

    path: str  # relative to the data folder, e.g. "MNIST/raw/t10k-labels-idx1-ubyte.gz"
    url: str
    sha256: str
    size: int | None = None  # bytes, for the progress message only


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    license: str
    homepage: str
    files: tuple[RemoteFile, ...]


_MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_TANG_COMMIT = "99ebbef7e1345c0985c44b9fd96a3f9e776f117b"
_TANG_URL = (
    f"https://raw.githubusercontent.com/chinese-poetry/chinese-poetry/{_TANG_COMMIT}/"
    "%E5%85%A8%E5%94%90%E8%AF%97/"  # the folder 全唐诗, URL-encoded
)
_TANG_SHA256 = {
    0: "4f88f429938082523cdc72a1612bd7a7c3e3f7a33f8192c61ae51340efc3c92d",
    1000: "6e703b8d8dcedbd6110f6d48d043665ca2131db2035a5bfcef5e59a19aeb6d75",
    2000: "ec28efa7e2ae9cdbbba09f0ed186e32ccae47a325ad1e5816b7ad56071c1665a",
    3000: "9e4ba2323752b6b9fbdba875cdbc6a26636fe0cabc85fd066370d4915952001f",
    4000: "b8a7946c879b9658a6c667a4c55f776fae7e5e00a17789ab06b274c1429afc66",
    5000: "a0306e6962cff01639ad9a00b042a201b8dec1f30fa5d768a7b112589887861e",
    6000: "982a21d2b15922b406911f1c825785054314c686da86b2155d7aebb362d22771",
    7000: "a6fb69d7b4343c904dc56ae5aae34facc2478d196b51c37ceba9d1e2f171b342",
    8000: "ac3848e95b02736168003863795de4474838c2d6a71a24ca2a4a280ea5177773",
    9000: "b99d6596e3a1fe1a661652383083f92d196b8baf4e461d087081d5e1e1b7a51f",
}


def _idx_files(folder: str, base_url: str, sha: dict[str, str]) -> tuple[RemoteFile, ...]:
    return tuple(
        RemoteFile(f"{folder}/raw/{name}", base_url + name, digest) for name, digest in sha.items()
    )


DATASETS: dict[str, DatasetInfo] = {
    "tinyshakespeare": DatasetInfo(
        name="tinyshakespeare",
        description="About 1.1 MB of Shakespeare's plays, the char-rnn / nanoGPT corpus.",
        license="Public domain text; file from karpathy/char-rnn (MIT).",
        homepage="https://github.com/karpathy/char-rnn",
        files=(
            RemoteFile(
                "tinyshakespeare/input.txt",
                "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
                "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
                1115394,
            ),
        ),
    ),
    "mnist": DatasetInfo(
        name="mnist",
        description="70,000 handwritten digits, 28x28 grayscale (LeCun, Cortes and Burges).",
        license="CC BY-SA 3.0 (as commonly stated).",
        homepage="http://yann.lecun.com/exdb/mnist/",
        files=_idx_files(
            "MNIST",
            _MNIST_URL,
            {
                "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            },
        ),
    ),
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist",
        description="70,000 Zalando article images in 10 classes, 28x28 grayscale.",
        license="MIT",
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        files=_idx_files(
            "FashionMNIST",
            _FASHION_URL,
            {
                "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            },
        ),
    ),
    "tang_poems": DatasetInfo(
        name="tang_poems",
        description="10,008 Tang poems (the first 10 files of chinese-poetry's 全唐诗), traditional characters.",
        license="MIT (chinese-poetry repository); the poems are public domain.",
        homepage="https://github.com/chinese-poetry/chinese-poetry",
        files=tuple(
            RemoteFile(f"chinese-poetry/tang/poet.tang.{k}.json", f"{_TANG_URL}poet.tang.{k}.json", v)
            for k, v in _TANG_SHA256.items()
        ),
    ),
    "en_zh": DatasetInfo(
        name="en_zh",
        description="26,388 English-Chinese sentence pairs from Tatoeba (manythings.org cmn-eng, 2021).",
        license="CC BY 2.0 FR (Tatoeba); per-sentence attribution in the third column.",
        homepage="https://www.manythings.org/anki/",
        files=(
            RemoteFile(
                "translation/cmn.txt",
                # manythings.org regenerates its zip; this pinned copy of the 2021 file is stable.
                "https://raw.githubusercontent.com/qi-dian-b/seq2seq2_machine-translation/"
                "e117d3a3bdb4c0b7b04db1fb929bf99eb50755b2/cmn.txt",
                "616cf5e3e1d575083852c4ab9937a271a2782337e245244b3ba6aad505287241",
                3765459,
            ),
        ),
    ),
}


class UnknownDatasetError(KeyError):
    """Raised for a dataset name the course does not know."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return self.args[0]


def dataset_info(name: str) -> DatasetInfo:
    """Look a dataset up by name (case and '-' insensitive)."""
    key = name.strip().lower().replace("-", "_")
    if key not in DATASETS:
        known = ", ".join(sorted(DATASETS))
        raise UnknownDatasetError(f"Unknown dataset {name!r}. Known datasets: {known}.")
    return DATASETS[key]
