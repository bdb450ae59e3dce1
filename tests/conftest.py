"""Shared test setup: no network, fast mode, quiet progress bars.

MPLBACKEND is deliberately left alone: notebook kernels inherit the environment, and with
MPLBACKEND=Agg they would show no inline figures.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_real_connect = socket.socket.connect


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        host = address[0]
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise OSError(f"Tests may not reach the network (tried {address!r}).")
    return _real_connect(self, address)


_mirror = REPO.parent / "shared" / "data"
if "AIGC_DATA_DIR" not in os.environ and _mirror.is_dir():
    os.environ["AIGC_DATA_DIR"] = str(_mirror)


def pytest_configure(config):
    socket.socket.connect = _guarded_connect
    os.environ.setdefault("AIGC_FAST", "1")
    os.environ.setdefault("AIGC_QUIET", "1")


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """An empty cache folder and no mirror: the data layer must download (or fail clearly)."""
    monkeypatch.setenv("AIGC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("AIGC_DATA_DIR", raising=False)
    return tmp_path / "cache"
