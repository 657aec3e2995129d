"""Microphone capture: a warm input stream writing into a ring buffer, read with pre-roll.

- The PortAudio callback (sounddevice) only copies its block into a `RingBuffer`; nothing else
  runs in the audio thread. The stream opens at the device's own rate and the *reader* converts
  to 16 kHz mono with FFmpeg's resampler (`Resampler16k`, PyAV), so any device works.
- The stream stays open between utterances, so when the push-to-talk key goes down the reader
  starts `preroll_s` in the past: the first word is never cut by stream start-up latency.
- A device that disappears (unplugged, driver reset) ends the stream or stops its callbacks;
  `check()` reports it as an `AudioDeviceError` and `recover()` reopens the same device or the
  default one.
- `FileMicrophone` replays an audio file in real time as if it were spoken into a microphone
  (`--input-file`): playback starts when an utterance begins, and a file mic falls silent
  (writes nothing) after the end, so an utterance that spans the whole file holds exactly the
  file's samples.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from voxtral_desktop.audio.decode import load_audio
from voxtral_desktop.config import SAMPLE_RATE
from voxtral_desktop.errors import AudioError
from voxtral_desktop.platform.audio_buffers import Resampler16k, RingBuffer, level_dbfs, write_float_wav
from voxtral_desktop.platform.base import AudioDeviceError

__all__ = [
    "AudioSource",
    "FileMicrophone",
    "InputDevice",
    "Resampler16k",
    "RingBuffer",
    "SoundDeviceMicrophone",
    "level_dbfs",
    "list_input_devices",
    "write_float_wav",
]

log = logging.getLogger(__name__)

RING_SECONDS = 30.0
DEFAULT_PREROLL_S = 0.3
STALL_S = 2.0  # a running stream that delivered nothing for this long is treated as lost
FILE_BLOCK_S = 0.02


@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    default_rate: int
    is_default: bool


class AudioSource(Protocol):
    """What the worker reads audio from."""

    name: str
    sample_rate: int
    ring: RingBuffer

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def begin_utterance(self) -> int:
        """The ring position the new utterance starts at (pre-roll included)."""

    def check(self) -> None:
        """Raise `AudioDeviceError` if the device stopped delivering audio."""

    def recover(self) -> bool:
        """Try to reopen a lost device; True when audio flows again."""

    def level_dbfs(self) -> float: ...


def _sounddevice() -> Any:
    try:
        import sounddevice
    except OSError:
        raise AudioDeviceError(
            "audio capture needs the PortAudio library (Debian/Ubuntu: apt install libportaudio2)"
        ) from None
    return sounddevice


def list_input_devices(backend: Any | None = None) -> list[InputDevice]:
    """Every device with input channels; [] when there is no sound card."""
    sd = backend or _sounddevice()
    try:
        devices = list(sd.query_devices())
    except Exception as exc:  # PortAudio raises its own error types
        log.warning("cannot list audio devices: %s", exc)
        return []
    try:
        default_in = int(sd.default.device[0])
    except (AttributeError, TypeError, ValueError, IndexError):
        default_in = -1
    return [
        InputDevice(i, str(d["name"]), int(d["default_samplerate"]), i == default_in)
        for i, d in enumerate(devices)
        if int(d.get("max_input_channels", 0)) > 0
    ]


class SoundDeviceMicrophone:
    """A sounddevice InputStream at the device's native rate feeding a ring buffer."""

    def __init__(
        self,
        device: str | int | None = None,
        *,
        preroll_s: float = DEFAULT_PREROLL_S,
        backend: Any | None = None,
    ) -> None:
        self._wanted = device
        self._preroll_s = preroll_s
        self._backend = backend
        self._stream: Any = None
        self._lost = False
        self._stopping = False
        self.name = "no microphone"
        self.sample_rate = SAMPLE_RATE
        self.ring = RingBuffer(int(RING_SECONDS * SAMPLE_RATE))

    def start(self) -> None:
        sd = self._backend or _sounddevice()
        devices = list_input_devices(sd)
        if not devices:
            raise AudioDeviceError(
                "no microphone found: connect one, or check that the sound system is running"
            )
        chosen = self._pick(devices, self._wanted)
        if chosen is None:
            wanted = self._wanted
            chosen = next((d for d in devices if d.is_default), devices[0])
            log.warning("input device %r not found; using %s", wanted, chosen.name)
        self._stopping = False
        # A fresh ring per stream: its positions count this device's samples at this rate.
        self.ring = RingBuffer(int(RING_SECONDS * chosen.default_rate))
        self.ring.last_write = time.monotonic()
        try:
            stream = sd.InputStream(
                device=chosen.index,
                samplerate=chosen.default_rate,
                channels=1,
                dtype="float32",
                callback=self._callback,
                finished_callback=self._finished,
            )
            stream.start()
        except Exception as exc:
            raise AudioDeviceError(f"cannot open the microphone {chosen.name}: {exc}") from None
        self._stream, self._lost = stream, False
        self.name, self.sample_rate = chosen.name, chosen.default_rate
        log.info("microphone %s open at %d Hz", self.name, self.sample_rate)

    def stop(self) -> None:
        self._stopping = True
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
                stream.close()
            except Exception as exc:
                log.debug("closing the input stream: %s", exc)

    def begin_utterance(self) -> int:
        return max(0, self.ring.written - int(self._preroll_s * self.sample_rate))

    def check(self) -> None:
        if self._stream is None and not self._lost:
            raise AudioDeviceError("the microphone is not open")
        stalled = time.monotonic() - self.ring.last_write > STALL_S
        if self._lost or stalled or not bool(getattr(self._stream, "active", True)):
            self._lost = True
            raise AudioDeviceError(
                f"the microphone {self.name} stopped delivering audio (unplugged?); "
                "recording stopped and the text so far is kept"
            )

    def recover(self) -> bool:
        self.stop()
        try:
            self.start()
        except AudioDeviceError as exc:
            log.debug("microphone not back yet: %s", exc)
            self._lost = True
            return False
        return True

    def level_dbfs(self) -> float:
        return level_dbfs(self.ring.latest(self.sample_rate // 20))

    # ---- audio thread: copy into the ring, nothing else -------------------------------------
    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        self.ring.write(indata[:, 0])

    def _finished(self) -> None:
        if not self._stopping:
            self._lost = True

    @staticmethod
    def _pick(devices: list[InputDevice], wanted: str | int | None) -> InputDevice | None:
        if wanted is None or wanted == "":
            return next((d for d in devices if d.is_default), devices[0])
        for d in devices:
            if d.index == wanted or d.name == wanted:
                return d
        return None


class FileMicrophone:
    """An audio file replayed in real time (or `speed` times faster) as the microphone."""

    def __init__(self, path: str | Path, *, speed: float = 1.0) -> None:
        self.path = Path(path)
        self.name = f"file {self.path.name}"
        self.sample_rate = SAMPLE_RATE
        self.speed = speed
        self._audio = np.zeros(0, np.float32)
        self.ring = RingBuffer(int(RING_SECONDS * SAMPLE_RATE))
        self._play = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.finished = threading.Event()  # set each time playback reaches the end of the file

    @property
    def duration_s(self) -> float:
        return self._audio.size / SAMPLE_RATE

    def start(self) -> None:
        try:
            self._audio = load_audio(self.path)
        except AudioError as exc:
            raise AudioDeviceError(f"cannot use the input file: {exc}") from None
        if self._audio.size > self.ring.capacity:
            self.ring = RingBuffer(self._audio.size + SAMPLE_RATE)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="file-microphone", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._play.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def begin_utterance(self) -> int:
        """Start (or restart, after the end) playback now; nothing was 'said' before it."""
        pos = self.ring.written
        if not self._play.is_set():
            self.finished.clear()
            self._play.set()
        return pos

    def check(self) -> None:
        return None

    def recover(self) -> bool:
        """A file that could not be read is tried again (it may have been fixed or restored)."""
        if self._thread is not None:
            return True
        try:
            self.start()
        except AudioDeviceError:
            return False
        return True

    def level_dbfs(self) -> float:
        if not self._play.is_set():
            return -100.0
        return level_dbfs(self.ring.latest(self.sample_rate // 20))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._play.wait()
            if self._stop.is_set():
                return
            t0, pos = time.monotonic(), 0
            while pos < self._audio.size and not self._stop.is_set():
                due = (
                    self._audio.size
                    if self.speed == float("inf")
                    else int((time.monotonic() - t0) * self.speed * SAMPLE_RATE)
                )
                due = min(self._audio.size, max(due, pos))
                if due > pos:
                    self.ring.write(self._audio[pos:due])
                    pos = due
                if pos < self._audio.size:
                    self._stop.wait(FILE_BLOCK_S / max(self.speed, 1e-3))
            log.info("input file %s played to the end (%.2f s)", self.path, self.duration_s)
            self._play.clear()
            self.finished.set()
