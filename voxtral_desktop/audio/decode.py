"""Decode any audio (or video) file ffmpeg knows into mono float32 samples at 16 kHz.

PyAV does the demuxing, decoding and resampling (`av.AudioResampler`). Channels are averaged
into mono here rather than by ffmpeg: ffmpeg's stereo -> mono matrix adds both channels at
-3 dB (so a centred voice comes out 1.41x louder and can clip), whereas the reference pipeline
(mistral-common) averages the channels. No other gain change, no normalisation, no clipping
(the reference keeps a lossy decoder's small overshoot past +-1, and so do we).

Every failure a user can cause is an `AudioError` with a one-line message.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from voxtral_desktop.config import SAMPLE_RATE
from voxtral_desktop.errors import AudioError

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SECONDS = 30.0

__all__ = ["DEFAULT_CHUNK_SECONDS", "audio_duration", "iter_audio", "load_audio", "metadata_duration"]


def _check_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise AudioError(f"no such file: {p}")
    if p.is_dir():
        raise AudioError(f"{p} is a directory, not an audio file")
    if p.stat().st_size == 0:
        raise AudioError(f"cannot decode {p}: the file is empty")
    return p


def _short_reason(exc: BaseException) -> str:
    """The first line of an ffmpeg/OS error, without the file name PyAV appends."""
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(reason).splitlines()[0].strip()


def _open(p: Path) -> av.container.InputContainer:
    try:
        return av.open(str(p), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError) as exc:
        raise AudioError(f"cannot decode {p}: {_short_reason(exc)}") from None


class _MonoResampler:
    """Resample decoded frames to float32 at 16 kHz, keeping the channels, then average them.

    `av.AudioResampler` is configured from the first frame it sees and refuses frames of another
    format, layout or rate; some streams change mid-way, so a new one is made (after flushing
    the old one) whenever the input changes.
    """

    def __init__(self) -> None:
        self._resampler: av.AudioResampler | None = None
        self._key: tuple[str, str, int] | None = None

    def push(self, frame: av.AudioFrame) -> list[np.ndarray]:
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        out = []
        if key != self._key:
            out = self.flush()
            # layout=None keeps the input's channels; fltp gives one row per channel.
            self._resampler = av.AudioResampler(format="fltp", layout=None, rate=SAMPLE_RATE)
            self._key = key
        assert self._resampler is not None
        return out + [_to_mono(f) for f in self._resampler.resample(frame)]

    def flush(self) -> list[np.ndarray]:
        """Drain the resampler's delay line (its last few milliseconds)."""
        if self._resampler is None:
            return []
        out = [_to_mono(f) for f in self._resampler.resample(None)]
        self._resampler = None
        self._key = None
        return out


def _to_mono(frame: av.AudioFrame) -> np.ndarray:
    planes = frame.to_ndarray()  # [channels, n] float32 (fltp)
    mono = planes[0] if planes.shape[0] == 1 else planes.mean(axis=0, dtype=np.float32)  # [n]
    return mono.astype(np.float32, copy=False)


def iter_audio(
    path: str | os.PathLike[str], chunk_seconds: float = DEFAULT_CHUNK_SECONDS
) -> Iterator[np.ndarray]:
    """Decode the first audio stream of `path` incrementally.

    Yields float32 mono 16 kHz chunks of exactly `round(chunk_seconds * 16000)` samples, except
    the last one, which is shorter (and never empty). Raises `AudioError` (possibly after some
    chunks were yielded, if the file is corrupt part-way) or if the stream holds no samples.
    """
    chunk = max(1, round(chunk_seconds * SAMPLE_RATE))
    p = _check_path(path)
    total = 0
    pending: list[np.ndarray] = []
    n_pending = 0
    with _open(p) as container:
        if not container.streams.audio:
            raise AudioError(f"{p} has no audio stream")
        stream = container.streams.audio[0]
        logger.debug(
            "decoding %s: %s, %s Hz, %s", p, stream.codec_context.name, stream.rate, stream.layout.name
        )
        for pieces in _decode_mono(p, container, stream):
            for piece in pieces:
                pending.append(piece)
                n_pending += len(piece)
            while n_pending >= chunk:
                joined = np.concatenate(pending)  # [n_pending]
                out, rest = joined[:chunk], joined[chunk:]
                pending, n_pending = ([rest] if len(rest) else []), len(rest)
                total += len(out)
                yield out
    if n_pending:
        total += n_pending
        yield np.concatenate(pending)
    if total == 0:
        raise AudioError(f"{p} contains no audio samples")


def _decode_mono(
    p: Path, container: av.container.InputContainer, stream: av.AudioStream
) -> Iterator[list[np.ndarray]]:
    """Yield lists of 16 kHz mono pieces as frames are decoded, then the resampler's tail."""
    resampler = _MonoResampler()
    try:
        for frame in container.decode(stream):
            yield resampler.push(frame)
        yield resampler.flush()
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise AudioError(f"cannot decode {p}: {_short_reason(exc)}") from None


def load_audio(path: str | os.PathLike[str]) -> np.ndarray:
    """The whole first audio stream of `path` as float32 mono 16 kHz samples in [-1, 1]."""
    chunks = list(iter_audio(path))
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


def audio_duration(path: str | os.PathLike[str]) -> float:
    """Duration in seconds of the first audio stream, from the container's metadata when it has
    any (instant), otherwise by decoding the stream."""
    seconds = metadata_duration(path)
    if seconds is not None:
        return seconds
    return sum(len(c) for c in iter_audio(path)) / SAMPLE_RATE  # says why, if it cannot be read


def metadata_duration(path: str | os.PathLike[str]) -> float | None:
    """The first audio stream's duration in seconds from the container's metadata alone (never
    decodes); None where there is none or the file cannot be opened (reading it says why)."""
    try:
        with _open(_check_path(path)) as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                return float(stream.duration * stream.time_base)
            if container.duration is not None:
                return container.duration / av.time_base
    except AudioError:
        return None
    return None
