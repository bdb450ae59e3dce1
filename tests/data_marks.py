"""Markers for tests that read the course's data mirror (AIGC_DATA_DIR)."""

import os
from pathlib import Path

import pytest


def has_mirror() -> bool:
    d = os.environ.get("AIGC_DATA_DIR")
    return bool(d) and (Path(d) / "MNIST" / "raw").is_dir()


# In CI the mirror must be there: a missing mirror fails there instead of skipping silently.
needs_data = pytest.mark.skipif(
    not has_mirror() and not os.environ.get("CI"), reason="needs the data mirror (set AIGC_DATA_DIR)"
)
