"""File transcription: decode the file in chunks and run them through a streaming session.

This is the same session the microphone uses; a file is only a fast, large-chunked stream.
Memory stays bounded for long files: audio is decoded chunk by chunk and the session's state is
fixed-size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voxtral_desktop.audio.decode import iter_audio
from voxtral_desktop.config import SAMPLE_RATE
from voxtral_desktop.engine.events import SessionUpdate, TimedToken
from voxtral_desktop.engine.session import StreamingSession

CHUNK_SECONDS = 30.0


@dataclass(frozen=True)
class Transcript:
    text: str
    tokens: tuple[TimedToken, ...]  # every id after the prompt, pads and word markers included, no EOS
    delay_ms: int
    duration_s: float
    language: str | None = None  # as given by the user; the model detects the language itself


def transcribe_stream(
    session: StreamingSession,
    chunks: Iterable[np.ndarray],
    *,
    language: str | None = None,
    on_update: Callable[[SessionUpdate], None] | None = None,
) -> Transcript:
    """Feed an iterable of float32 16 kHz chunks through a fresh stream, then flush it."""
    session.reset()
    tokens: list[TimedToken] = []
    n_samples = 0
    for chunk in chunks:
        n_samples += len(chunk)
        update = session.feed(chunk)
        tokens.extend(update.tokens)
        if on_update is not None and update.tokens:
            on_update(update)
        if update.finished:
            break
    final = session.flush()
    tokens.extend(final.tokens)
    if on_update is not None:
        on_update(final)
    return Transcript(
        text="".join(t.text for t in tokens),
        tokens=tuple(tokens),
        delay_ms=session.config.delay_ms,
        duration_s=n_samples / SAMPLE_RATE,
        language=language,
    )


def transcribe_file(
    session: StreamingSession,
    path: str | Path,
    *,
    language: str | None = None,
    on_update: Callable[[SessionUpdate], None] | None = None,
) -> Transcript:
    return transcribe_stream(
        session, iter_audio(Path(path), chunk_seconds=CHUNK_SECONDS), language=language, on_update=on_update
    )
