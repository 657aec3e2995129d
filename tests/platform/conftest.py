"""Platform tests share the X server helpers of tests/ui (Xvfb, the receiving app)."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_runtime = tempfile.mkdtemp(prefix="voxtral-platform-xdg-")
os.chmod(_runtime, 0o700)
os.environ.setdefault("XDG_RUNTIME_DIR", _runtime)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ui"))
import xsession  # noqa: E402


@pytest.fixture(scope="session")
def xvfb() -> Iterator[str]:
    yield from xsession.xvfb_fixture()
