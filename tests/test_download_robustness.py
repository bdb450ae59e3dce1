"""Downloads that break mid-way: retried, turned into a DataError, and never leave a ``.tmp``."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import os
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from aigc_course import data
from aigc_course.data.registry import RemoteFile

PAYLOAD = b"To be, or not to be, that is the question.\n" * 100
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _BrokenServer:
    """A loopback server whose first ``bad`` answers break in the way ``mode`` names.

    ``length``: announces the full Content-Length, sends half and hangs up.
    ``chunked``: sends one chunk of a chunked body and hangs up before the last chunk.
    ``garbage``: answers with a line that is not an HTTP status line.
    """

    def __init__(self, mode: str, bad: int):
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                outer.hits += 1
                self.close_connection = True
                if outer.hits > bad:
                    self._send(PAYLOAD, {"Content-Length": str(len(PAYLOAD))})
                elif mode == "length":
                    self._send(PAYLOAD[: len(PAYLOAD) // 2], {"Content-Length": str(len(PAYLOAD))})
                elif mode == "chunked":
                    half = PAYLOAD[: len(PAYLOAD) // 2]
                    chunk = f"{len(half):x}\r\n".encode() + half + b"\r\n"
                    self._send(chunk, {"Transfer-Encoding": "chunked"})
                else:
                    self.wfile.write(b"garbage\r\n\r\n")

            def _send(self, body: bytes, headers: dict[str, str]):
                self.send_response(200)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/input.txt"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def broken():
    servers = []

    def make(mode: str, bad: int) -> _BrokenServer:
        servers.append(_BrokenServer(mode, bad))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def served_payload(broken):
    """The URL of a server that answers correctly (a broken server with no bad answers)."""
    return broken("length", bad=0).url


class _FakeResponse:
    """What ``urlopen`` returns: a few bytes, then ``error`` raised from ``read``."""

    def __init__(self, error: BaseException, on_raise=None):
        self.error, self.on_raise, self.reads = error, on_raise, 0
        self.length = None  # no Content-Length, as http.client reports it

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, amt=None):
        self.reads += 1
        if self.reads == 1:
            return PAYLOAD[:100]
        if self.on_raise is not None:
            self.on_raise()
        raise self.error


def _no_tmp(folder):
    return not list(folder.glob("*.tmp"))


@pytest.mark.parametrize("mode", ["length", "chunked", "garbage"])
def test_broken_transfer_is_retried_then_fails_clearly(broken, tmp_cache, mode):
    server = broken(mode, bad=3)
    dest = tmp_cache / "data" / "demo" / "input.txt"
    with pytest.raises(data.DataUnavailableError) as err:
        data.download(server.url, dest, SHA, retries=3, backoff=0.0)
    msg = str(err.value)
    assert server.hits == 3
    assert "input.txt" in msg and server.url in msg and "AIGC_DATA_DIR" in msg and "again" in msg
    assert not dest.exists() and _no_tmp(dest.parent)


@pytest.mark.parametrize("mode", ["length", "chunked", "garbage"])
def test_broken_first_attempt_is_retried(broken, tmp_cache, mode):
    server = broken(mode, bad=1)
    dest = tmp_cache / "data" / "demo" / "input.txt"
    assert data.download(server.url, dest, SHA, retries=3, backoff=0.0) == dest
    assert dest.read_bytes() == PAYLOAD and server.hits == 2 and _no_tmp(dest.parent)


def test_retries_back_off_exponentially(broken, tmp_cache, monkeypatch):
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    server = broken("length", bad=3)
    with pytest.raises(data.DataUnavailableError):
        data.download(server.url, tmp_cache / "input.txt", SHA, retries=3, backoff=0.5)
    assert slept == [0.5, 1.0]


def _fake_urlopen(monkeypatch, error, on_raise=None):
    calls = []

    def urlopen(*args, **kwargs):
        calls.append(args)
        return _FakeResponse(error, on_raise)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return calls


def test_ctrl_c_mid_download_propagates_and_leaves_no_tmp(tmp_cache, monkeypatch):
    dest = tmp_cache / "data" / "demo" / "input.txt"
    seen = []  # the temporary files at the moment of the interruption
    calls = _fake_urlopen(monkeypatch, KeyboardInterrupt(),
                          on_raise=lambda: seen.extend(dest.parent.glob("*.tmp")))
    with pytest.raises(KeyboardInterrupt):
        data.download("http://127.0.0.1:9/input.txt", dest, SHA, retries=3, backoff=0.0)
    assert seen, "the interruption must hit while the temporary file exists"
    assert len(calls) == 1  # not retried, not swallowed
    assert not dest.exists() and _no_tmp(dest.parent)


def test_ctrl_c_during_checksum_leaves_no_tmp(served_payload, tmp_cache, monkeypatch):
    download_module = sys.modules[data.download.__module__]

    def interrupted(path, *args, **kwargs):
        assert path.exists()
        raise KeyboardInterrupt

    monkeypatch.setattr(download_module, "sha256sum", interrupted)
    dest = tmp_cache / "data" / "demo" / "input.txt"
    with pytest.raises(KeyboardInterrupt):
        data.download(served_payload, dest, SHA, backoff=0.0)
    assert not dest.exists() and _no_tmp(dest.parent)


RETRIED = [
    ConnectionResetError(104, "Connection reset by peer"),
    TimeoutError("The read operation timed out"),
    OSError(28, "No space left on device"),
    http.client.IncompleteRead(b"x" * 10, 90),
    http.client.RemoteDisconnected("Remote end closed connection without response"),
    http.client.HTTPException("got more than 100 headers"),
]


@pytest.mark.parametrize("error", RETRIED, ids=lambda e: type(e).__name__)
def test_transfer_errors_are_retried_then_become_data_errors(tmp_cache, monkeypatch, error):
    calls = _fake_urlopen(monkeypatch, error)
    dest = tmp_cache / "data" / "demo" / "input.txt"
    url = "http://127.0.0.1:9/input.txt"
    with pytest.raises(data.DataUnavailableError) as err:
        data.download(url, dest, SHA, retries=3, backoff=0.0)
    assert len(calls) == 3 and err.value.__cause__ is error
    msg = str(err.value)
    assert "input.txt" in msg and url in msg and type(error).__name__ in msg
    assert not dest.exists() and _no_tmp(dest.parent)


@pytest.mark.parametrize("error", [ValueError("invalid literal for int() with base 16: b'zz'"),
                                   http.client.InvalidURL("nonnumeric port: 'x'"),
                                   LookupError("unknown encoding")],
                         ids=lambda e: type(e).__name__)
def test_unexpected_errors_become_data_errors_at_once(tmp_cache, monkeypatch, error):
    calls = _fake_urlopen(monkeypatch, error)
    dest = tmp_cache / "data" / "demo" / "input.txt"
    url = "http://127.0.0.1:9/input.txt"
    with pytest.raises(data.DataError) as err:
        data.download(url, dest, SHA, retries=3, backoff=0.0)
    assert len(calls) == 1 and err.value.__cause__ is error  # not transient: no retry
    msg = str(err.value)
    assert "input.txt" in msg and url in msg and type(error).__name__ in msg and "AIGC_DATA_DIR" in msg
    assert not dest.exists() and _no_tmp(dest.parent)


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return int(proc.stdout)


@pytest.fixture
def leftovers(tmp_cache):
    """Temporary files of a crashed run, of a live download, of an old one and of another file."""
    folder = tmp_cache / "data" / "demo"
    folder.mkdir(parents=True)
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = folder / f"input.txt.{_dead_pid()}.tmp"
    live = folder / f"input.txt.{writer.pid}.tmp"
    ancient = folder / "input.txt.1.tmp"  # pid 1 is always alive, but a week is too long
    other = folder / "other.txt.1.tmp"
    for p in (dead, live, ancient, other):
        p.write_bytes(b"half a file")
    week_ago = time.time() - 7 * 24 * 3600
    os.utime(ancient, (week_ago, week_ago))
    yield folder, dead, live, ancient, other
    writer.kill()
    writer.wait()


@pytest.mark.skipif(os.name == "nt", reason="whether a pid is alive is not checked on Windows")
@pytest.mark.parametrize("cached", [False, True], ids=["download", "cache-hit"])
def test_stale_tmp_files_are_removed_on_next_fetch(served_payload, leftovers, cached):
    remote = RemoteFile("demo/input.txt", served_payload, SHA)
    folder, dead, live, ancient, other = leftovers
    if cached:
        (folder / "input.txt").write_bytes(PAYLOAD)
    assert data.fetch_file(remote).read_bytes() == PAYLOAD
    assert not dead.exists(), "a crashed run's temporary file must go"
    assert not ancient.exists(), "a temporary file untouched for a week is stale whatever its pid"
    assert live.exists(), "a live process may still be writing this one"
    assert other.exists(), "only the temporary files of the fetched file are looked at"
