"""The data layer: registry, verified downloads, mirror, loaders and their errors."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import struct
import threading
from pathlib import Path

import pytest
import torch
from data_marks import needs_data

from aigc_course import data
from aigc_course.data.registry import RemoteFile


class _Server:
    """A loopback HTTP server whose first ``fail_first`` requests answer 503."""

    def __init__(self, root: Path, fail_first: int = 0):
        self.hits = 0
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=str(root), **kw)

            def do_GET(self):
                outer.hits += 1
                if outer.hits <= fail_first:
                    self.send_error(503)
                    return
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    payload = b"To be, or not to be, that is the question.\n" * 100
    (root / "input.txt").write_bytes(payload)
    servers = []

    def make(fail_first=0):
        s = _Server(root, fail_first)
        servers.append(s)
        return s, hashlib.sha256(payload).hexdigest(), payload

    yield make
    for s in servers:
        s.close()


def test_unknown_dataset_lists_known_names():
    with pytest.raises(data.UnknownDatasetError) as err:
        data.fetch("imagenet")
    msg = str(err.value)
    assert "imagenet" in msg and "mnist" in msg and "tinyshakespeare" in msg


def test_dataset_names_are_normalised():
    assert data.dataset_info("Fashion-MNIST").name == "fashion_mnist"


def test_registry_is_complete():
    assert set(data.DATASETS) == {"tinyshakespeare", "mnist", "fashion_mnist", "tang_poems", "en_zh"}
    for info in data.DATASETS.values():
        for f in info.files:
            assert f.url.startswith("http") and len(f.sha256) == 64


def test_download_with_retries_and_atomic_rename(served, tmp_cache):
    server, sha, payload = served(fail_first=2)
    dest = tmp_cache / "data" / "x" / "input.txt"
    data.download(server.url + "input.txt", dest, sha, retries=3, backoff=0.0)
    assert dest.read_bytes() == payload and server.hits == 3
    assert not list(dest.parent.glob("*.tmp"))


def test_download_hash_mismatch_deletes_the_file(served, tmp_cache):
    server, _, _ = served()
    dest = tmp_cache / "data" / "input.txt"
    with pytest.raises(data.ChecksumError, match="deleted"):
        data.download(server.url + "input.txt", dest, "0" * 64, backoff=0.0)
    assert not dest.exists() and not list(dest.parent.glob("*"))


def test_offline_without_mirror_says_what_to_do(tmp_cache):
    remote = RemoteFile("tinyshakespeare/input.txt", "http://192.0.2.1/input.txt", "0" * 64)
    with pytest.raises(data.DataUnavailableError) as err:
        data.download(remote.url, tmp_cache / "data" / remote.path, remote.sha256, retries=2, backoff=0.0, timeout=2)
    msg = str(err.value)
    assert "AIGC_DATA_DIR" in msg and "offline" in msg and "input.txt" in msg
    assert not (tmp_cache / "data" / remote.path).exists()


def test_fetch_file_uses_cache_and_replaces_corrupt_copy(served, tmp_cache, monkeypatch):
    server, sha, payload = served()
    remote = RemoteFile("demo/input.txt", server.url + "input.txt", sha)
    cached = tmp_cache / "data" / "demo" / "input.txt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"corrupt")
    assert data.fetch_file(remote).read_bytes() == payload  # the corrupt copy was replaced
    hits = server.hits
    assert data.fetch_file(remote) == cached and server.hits == hits  # no second download


def test_mirror_is_used_read_only_and_checked(tmp_path, monkeypatch, tmp_cache):
    mirror = tmp_path / "mirror"
    (mirror / "demo").mkdir(parents=True)
    (mirror / "demo" / "input.txt").write_bytes(b"hello")
    monkeypatch.setenv("AIGC_DATA_DIR", str(mirror))
    good = RemoteFile("demo/input.txt", "http://192.0.2.1/x", hashlib.sha256(b"hello").hexdigest())
    assert data.fetch_file(good) == mirror / "demo" / "input.txt"
    bad = RemoteFile("demo/input.txt", "http://192.0.2.1/x", "1" * 64)
    with pytest.raises(data.ChecksumError, match="read-only"):
        data.fetch_file(bad)
    assert (mirror / "demo" / "input.txt").read_bytes() == b"hello"  # untouched


def _idx(path: Path, arr: bytes, header: bytes):
    with gzip.open(path, "wb") as f:
        f.write(header + arr)


def test_read_idx_valid_and_corrupt(tmp_path):
    p = tmp_path / "imgs.gz"
    _idx(p, bytes(range(8)), struct.pack(">IIII", 2051, 2, 2, 2))
    assert data.read_idx(p).shape == (2, 2, 2)
    _idx(p, bytes(range(7)), struct.pack(">IIII", 2051, 2, 2, 2))
    with pytest.raises(data.DataError, match="truncated"):
        data.read_idx(p)
    _idx(p, b"", struct.pack(">II", 1234, 0))
    with pytest.raises(data.DataError, match="magic"):
        data.read_idx(p)
    p.write_bytes(b"\x1f\x8b\x08 this is not gzip")
    with pytest.raises(data.DataError, match="Delete it"):
        data.read_idx(p)


@needs_data
def test_mnist_from_mirror():
    x, y = data.image_tensors("mnist", "test")
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,)
    assert x.min() == -1 and x.max() == 1 and set(y.tolist()) == set(range(10))
    x01, _ = data.image_tensors("fashion_mnist", "train", scale="[0, 1]", limit=10)
    assert x01.shape == (10, 1, 28, 28) and 0 <= x01.min() and x01.max() <= 1
    with pytest.raises(ValueError, match="split"):
        data.load_images("mnist", "validation")
    with pytest.raises(ValueError, match="image dataset"):
        data.load_images("tinyshakespeare")


@needs_data
def test_text_corpora_from_mirror():
    text = data.load_text()
    assert len(text) == 1115394 and text.startswith("First Citizen")
    train, val = data.train_val_split(text)
    assert len(train) == 1003854 and train + val == text
    poems = data.load_tang_poems()
    assert len(poems) == 10008 and poems[0].lines[0] == "秦川雄帝宅，函谷壯皇居。"
    pairs = data.load_en_zh()
    assert len(pairs) == 26388 and pairs[0].en == "Hi." and "tatoeba" in pairs[0].attribution


def test_train_val_split_rejects_bad_fraction():
    with pytest.raises(ValueError):
        data.train_val_split("abc", 1.5)


def test_toy_2d_deterministic_and_validated():
    for name in data.TOY_2D:
        a, b = data.toy_2d(name, 500, seed=3), data.toy_2d(name, 500, seed=3)
        torch.testing.assert_close(a, b)
        assert a.shape == (500, 2) and a.abs().max() < 5
    with pytest.raises(ValueError, match="Known"):
        data.toy_2d("swiss_roll_3d")
    with pytest.raises(ValueError):
        data.toy_2d("two_moons", 0)


def test_torchvision_dataset_when_available():
    try:
        import torchvision  # noqa: F401
    except Exception:
        with pytest.raises(ImportError, match="image_tensors"):
            data.torchvision_dataset("mnist")
        return
    pytest.skip("torchvision works here; covered by the notebooks")
