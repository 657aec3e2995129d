"""The audio building blocks the capture code and the worker share: a ring buffer, a streaming
16 kHz resampler, a level meter and a lossless WAV writer. No threads, no devices."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import av
import numpy as np

from voxtral_desktop.config import SAMPLE_RATE

log = logging.getLogger(__name__)

__all__ = ["Resampler16k", "RingBuffer", "level_dbfs", "write_float_wav"]


class RingBuffer:
    """Fixed-size float32 history of one mono stream; one writer, any number of readers.

    Positions are absolute sample counts since the stream began (`written` is the next one), so a
    reader keeps its own position and never misses or repeats a sample unless it falls more
    than `capacity` samples behind (then the oldest are skipped and logged).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._buf = np.zeros(self.capacity, np.float32)
        self._written = 0
        self._lock = threading.Lock()
        self.last_write = 0.0  # time.monotonic() of the last write

    @property
    def written(self) -> int:
        return self._written

    def write(self, samples: np.ndarray) -> None:
        x = np.asarray(samples, np.float32).reshape(-1)
        if x.size > self.capacity:
            x = x[-self.capacity :]
        with self._lock:
            start = self._written % self.capacity
            first = min(x.size, self.capacity - start)
            self._buf[start : start + first] = x[:first]
            self._buf[: x.size - first] = x[first:]
            self._written += x.size
            self.last_write = time.monotonic()

    def read(self, start: int, max_samples: int | None = None) -> tuple[np.ndarray, int]:
        """Samples [start, written) (at most `max_samples`) and the position after them."""
        with self._lock:
            end = self._written
            oldest = max(0, end - self.capacity)
            if start < oldest:
                log.warning(
                    "audio reader fell %d samples behind the ring buffer; skipping them", oldest - start
                )
                start = oldest
            if max_samples is not None:
                end = min(end, start + max_samples)
            n = max(0, end - start)
            i = start % self.capacity
            first = min(n, self.capacity - i)
            out = np.concatenate([self._buf[i : i + first], self._buf[: n - first]])  # [n]
        return out, start + n

    def latest(self, n: int) -> np.ndarray:
        """The last `n` samples written (fewer at the very start)."""
        pos = max(0, self._written - n)
        return self.read(pos, n)[0]


class Resampler16k:
    """Streaming conversion of float32 mono at `rate` Hz to 16 kHz (FFmpeg swresample via PyAV)."""

    def __init__(self, rate: int) -> None:
        self.rate = int(rate)
        self._resampler = (
            None
            if self.rate == SAMPLE_RATE
            else av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        )

    def push(self, samples: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(samples, np.float32).reshape(-1)
        if self._resampler is None or x.size == 0:
            return x
        frame = av.AudioFrame.from_ndarray(x[None, :], format="flt", layout="mono")  # [1, n]
        frame.sample_rate = self.rate
        return self._collect(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        """The resampler's delay line; the object is spent afterwards."""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        return self._collect(self._resampler.resample(None))

    @staticmethod
    def _collect(frames: list[av.AudioFrame]) -> np.ndarray:
        parts = [f.to_ndarray().reshape(-1) for f in frames]
        return np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros(0, np.float32)


def write_float_wav(path: str | Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> Path:
    """A mono 32-bit float WAV: lossless, so decoding it gives back exactly these samples."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.ascontiguousarray(samples, np.float32).reshape(1, -1)  # [1, n]
    with av.open(str(path), "w", format="wav") as out:
        stream = out.add_stream("pcm_f32le", rate=rate, layout="mono")
        if x.shape[1]:
            frame = av.AudioFrame.from_ndarray(x, format="flt", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def level_dbfs(samples: np.ndarray) -> float:
    """RMS level in dBFS, floored at -100."""
    if samples.size == 0:
        return -100.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(-100.0, 20.0 * float(np.log10(max(rms, 1e-5))))
