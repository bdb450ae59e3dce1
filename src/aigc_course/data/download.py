"""Getting a dataset's files onto the disk: mirror first, then the cache, then the web.

Taught in book/setup.md (section Data). For every file of a dataset (see ``registry.py``):

1. ``AIGC_DATA_DIR`` set and the file there: use it in place (the mirror is read-only; nothing
   is ever written into it).
2. The file in the cache (``AIGC_CACHE_DIR``, default ``~/.cache/aigc_course``) under ``data/``.
3. Otherwise download it from its canonical URL, with retries, into a temporary file next to
   its destination; check its SHA-256; rename it into place only if the check passes.

Every failure raises a :class:`DataError` whose message names the file and says what to do.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from .registry import RemoteFile, dataset_info


class DataError(RuntimeError):
    """Base class of the data layer's errors (the message always says how to fix it)."""


class DataUnavailableError(DataError):
    """The file is not on disk and could not be downloaded (offline, or the URL is gone)."""


class ChecksumError(DataError):
    """A file's SHA-256 is not the expected one."""


def cache_dir() -> Path:
    """Where the course writes downloads, extracted files and retrained weights."""
    root = os.environ.get("AIGC_CACHE_DIR") or Path.home() / ".cache" / "aigc_course"
    return Path(root).expanduser()


def mirror_dir() -> Path | None:
    """The read-only local mirror named by ``AIGC_DATA_DIR``, if any."""
    root = os.environ.get("AIGC_DATA_DIR")
    return Path(root).expanduser() if root else None


def sha256sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_verified: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256


def _cached_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        _verified[key] = sha256sum(path)
    return _verified[key]


def download(url: str, dest: Path, sha256: str, retries: int = 3, timeout: float = 60.0,
             backoff: float = 1.0) -> Path:
    """Download ``url`` to ``dest`` atomically and check its SHA-256.

    The bytes go to ``dest.<pid>.tmp`` first; ``dest`` appears only once the checksum matches,
    so an interrupted or corrupted download never leaves a half-written file at ``dest``.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    last_error: Exception | None = None
    for attempt in range(1, retries + 1):
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "aigc-course"})
            with urllib.request.urlopen(req, timeout=timeout) as resp, open(tmp, "wb") as f:
                while block := resp.read(1 << 20):
                    f.write(block)
            break
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            last_error = err
            tmp.unlink(missing_ok=True)
            if attempt < retries:
                time.sleep(backoff * 2 ** (attempt - 1))
    else:
        raise DataUnavailableError(
            f"Could not download {dest.name} from {url} after {retries} attempts "
            f"({last_error}).\nIf you are offline: download that URL on a machine with internet "
            f"access and save it as {dest}, or set AIGC_DATA_DIR to a folder that already holds "
            f"the course data (the file is expected at <AIGC_DATA_DIR>/{_relative(dest)})."
        ) from last_error

    digest = sha256sum(tmp)
    if digest != sha256:
        tmp.unlink(missing_ok=True)
        raise ChecksumError(
            f"The download of {url} has SHA-256 {digest}, expected {sha256}. The bad file was "
            f"deleted. The server may have sent an error page or a changed file: try again later, "
            f"or place a verified copy at {dest}."
        )
    os.replace(tmp, dest)
    return dest


def _relative(dest: Path) -> str:
    try:
        return str(dest.relative_to(cache_dir() / "data"))
    except ValueError:
        return dest.name


def fetch_file(remote: RemoteFile) -> Path:
    """Return a verified local path for one file (mirror, then cache, then download)."""
    mirror = mirror_dir()
    if mirror is not None and (mirror / remote.path).is_file():
        path = mirror / remote.path
        digest = _cached_sha256(path)
        if digest != remote.sha256:
            raise ChecksumError(
                f"{path} in the mirror AIGC_DATA_DIR has SHA-256 {digest}, expected "
                f"{remote.sha256}. The mirror is read-only, so the course leaves it alone: "
                f"replace that file with a good copy, or unset AIGC_DATA_DIR to download it."
            )
        return path

    path = cache_dir() / "data" / remote.path
    if path.is_file():
        digest = _cached_sha256(path)
        if digest == remote.sha256:
            return path
        path.unlink()  # corrupted or stale: remove it and fetch a fresh copy
        print(f"[aigc_course] {path} had the wrong SHA-256 ({digest}); deleted it, downloading again.")
    print(f"[aigc_course] downloading {remote.url}")
    return download(remote.url, path, remote.sha256)


def fetch(name: str) -> dict[str, Path]:
    """Make every file of dataset ``name`` available; return {file name: local path}.

    >>> paths = fetch("tinyshakespeare")  # doctest: +SKIP
    >>> paths["input.txt"].read_text()[:10]  # doctest: +SKIP
    'First Citi'
    """
    info = dataset_info(name)
    return {Path(f.path).name: fetch_file(f) for f in info.files}
