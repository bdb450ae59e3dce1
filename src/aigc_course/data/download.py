"""Getting a dataset's files onto the disk: mirror first, then the cache, then the web.

Taught in book/setup.md (section Data). For every file of a dataset (see ``registry.py``):

1. ``AIGC_DATA_DIR`` set and the file there: use it in place (the mirror is read-only; nothing
   is ever written into it).
2. The file in the cache (``AIGC_CACHE_DIR``, default ``~/.cache/aigc_course``) under ``data/``.
3. Otherwise download it from its canonical URL, with retries, into a temporary file next to
   its destination; check its SHA-256; rename it into place only if the check passes.

Every failure raises a :class:`DataError` whose message names the file and says what to do, and
nothing half-written remains: whatever stops a download (a dropped or truncated transfer, a
server error, Ctrl-C) deletes its temporary file before the exception leaves ``download``.
``KeyboardInterrupt`` and ``SystemExit`` are re-raised unchanged, never turned into a
``DataError``. Temporary files that a killed run could not delete (``<name>.<pid>.tmp``) are
removed the next time that file is fetched, once their process is gone (see ``_is_stale``).
"""

from __future__ import annotations

import glob
import hashlib
import http.client
import os
import time
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


# Errors after which another attempt may succeed: no connection, a dropped or truncated
# transfer, a garbled answer, a timeout (URLError and ConnectionError are OSErrors).
_TRANSIENT = (OSError, http.client.HTTPException)

_STALE_AGE = 24 * 3600.0  # seconds; an untouched temporary file this old is dead whatever its pid


def download(url: str, dest: Path, sha256: str, retries: int = 3, timeout: float = 60.0,
             backoff: float = 1.0) -> Path:
    """Download ``url`` to ``dest`` atomically and check its SHA-256.

    The bytes go to ``dest.<pid>.tmp`` first; ``dest`` appears only once the checksum matches.
    Whatever ends the call early (an error, Ctrl-C) deletes the temporary file on its way out,
    so no half-written file remains, at ``dest`` or next to it.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(dest)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    try:
        _download_with_retries(url, dest, tmp, retries, timeout, backoff)
        digest = sha256sum(tmp)
        if digest != sha256:
            raise ChecksumError(
                f"The download of {url} has SHA-256 {digest}, expected {sha256}. The bad file "
                f"was deleted. The server may have sent an error page or a changed file: try "
                f"again later, or place a verified copy at {dest}."
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)  # a no-op after the rename; otherwise this is the cleanup
    return dest


def _download_with_retries(url: str, dest: Path, tmp: Path, retries: int, timeout: float,
                           backoff: float) -> None:
    """Fill ``tmp`` with the body of ``url``, retrying transient errors with a growing pause."""
    for attempt in range(1, retries + 1):
        try:
            _transfer(url, tmp, timeout)
            return
        except Exception as err:
            tmp.unlink(missing_ok=True)
            if not _is_transient(err):  # a bug or a malformed answer: retrying would not help
                raise DataUnavailableError(
                    f"Downloading {dest.name} from {url} failed unexpectedly "
                    f"({_describe(err)}); the partial file was deleted. Try again; if it fails "
                    f"the same way:\n" + _what_to_do(url, dest)
                ) from err
            if attempt == retries:
                raise DataUnavailableError(
                    f"Could not download {dest.name} from {url} after {retries} attempts "
                    f"({_describe(err)}). The connection may have dropped: try again later.\n"
                    + _what_to_do(url, dest)
                ) from err
            time.sleep(backoff * 2 ** (attempt - 1))


def _is_transient(err: Exception) -> bool:
    # InvalidURL is an HTTPException too, but a malformed URL stays malformed.
    return isinstance(err, _TRANSIENT) and not isinstance(err, http.client.InvalidURL)


def _transfer(url: str, tmp: Path, timeout: float) -> None:
    """One attempt: write the body of ``url`` to ``tmp``; a short body is an error."""
    req = urllib.request.Request(url, headers={"User-Agent": "aigc-course"})
    with urllib.request.urlopen(req, timeout=timeout) as resp, open(tmp, "wb") as f:
        # http.client parses Content-Length into .length (None if absent, invalid or chunked);
        # read(n) returns b"" when the connection ends early instead of raising, so count.
        expected, received = getattr(resp, "length", None), 0
        while block := resp.read(1 << 20):
            f.write(block)
            received += len(block)
    if expected is not None and received < expected:
        raise ConnectionError(f"the connection ended after {received} of the {expected} bytes "
                              f"the server announced")


def _describe(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__


def _what_to_do(url: str, dest: Path) -> str:
    return (
        f"If you are offline: download that URL on a machine with internet access and save it "
        f"as {dest}, or set AIGC_DATA_DIR to a folder that already holds the course data (the "
        f"file is expected at <AIGC_DATA_DIR>/{_relative(dest)})."
    )


def _remove_stale_tmp(dest: Path) -> None:
    """Delete the temporary files that earlier, killed downloads of ``dest`` left behind."""
    if not dest.parent.is_dir():
        return
    for tmp in dest.parent.glob(f"{glob.escape(dest.name)}.*.tmp"):
        pid = tmp.name[len(dest.name) + 1:-len(".tmp")]
        if pid.isdigit() and _is_stale(tmp, int(pid)):
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass  # not ours to delete (permissions): it only wastes space


def _is_stale(tmp: Path, pid: int) -> bool:
    """Whether no live download can still be writing ``tmp`` (named after its writer's pid).

    Stale means the pid is not a running process here, or the file has not changed for a day
    (pids are reused). This process's own file is left alone: the download overwrites it. Pids
    are checked on this machine only, so machines sharing a cache folder must not download the
    same file at the same moment.
    """
    try:
        age = time.time() - tmp.stat().st_mtime
    except OSError:
        return False  # already gone
    if pid == os.getpid():
        return False
    return age > _STALE_AGE or not _pid_alive(pid)


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process there; rely on age
        return True
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists but belongs to another user (PermissionError)
    return True


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
    _remove_stale_tmp(path)
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
