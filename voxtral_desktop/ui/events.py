"""Frozen records the app's threads send each other through Qt signals (no Qt types here).

The engine's own records (`SessionUpdate`, `TimedToken`, `ModelInfo`) come from
`voxtral_desktop.engine.events`; these add what the app needs around them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from voxtral_desktop.engine.events import ModelInfo, TimedToken
from voxtral_desktop.platform.base import WindowInfo


class ModelStatus(str, Enum):
    NONE = "none"  # no model configured yet
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class ModelState:
    status: ModelStatus
    message: str = ""  # the one-line reason when FAILED, the path when LOADING
    info: ModelInfo | None = None
    delay_ms: int = 0


@dataclass(frozen=True)
class UtteranceStarted:
    utterance_id: int
    started_at: float  # unix time
    target: WindowInfo | None = None


@dataclass(frozen=True)
class TextDelta:
    """Newly recognised text of one utterance (append-only: the engine never revises it)."""

    utterance_id: int
    text: str
    tokens: tuple[TimedToken, ...] = ()
    audio_s: float = 0.0  # audio heard so far in this utterance
    final: bool = False  # the flush after the key went up


@dataclass(frozen=True)
class UtteranceEnded:
    utterance_id: int
    text: str  # everything recognised in the utterance
    duration_s: float
    problem: str = ""  # set when it ended early (microphone lost, no model)


@dataclass(frozen=True)
class AudioStatus:
    ok: bool
    device: str
    message: str = ""


@dataclass(frozen=True)
class DeliveryFailed:
    """Typing into the target window stopped; `undelivered` is what it never received."""

    utterance_id: int
    message: str
    undelivered: str


@dataclass(frozen=True)
class DownloadProgress:
    stage: str  # "download" or "convert"
    done: int
    total: int
    detail: str = ""
