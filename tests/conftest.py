"""Shared fixtures: tiny synthetic models (random weights, real formats) and their tokenizer."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for tests/hf_reference.py

# Headless everywhere: tests never need a real display or sound card.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def tekken_small() -> dict:
    """A realistic tekken.json (mistral-common's vocabulary) with 2000 text tokens."""
    from voxtral_desktop.synthetic.tekken import build_tekken_json

    return build_tekken_json(2000)


@pytest.fixture(scope="session")
def tekken_small_bytes(tekken_small: dict) -> bytes:
    return json.dumps(tekken_small).encode()


@pytest.fixture(scope="session")
def tokenizer_small(tekken_small: dict):
    from voxtral_desktop.engine.tokenizer import TekkenTokenizer

    return TekkenTokenizer.from_dict(tekken_small)
