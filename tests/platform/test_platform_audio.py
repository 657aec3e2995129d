"""Capture without a sound card: a fake PortAudio backend drives the real capture code."""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from voxtral_desktop.config import SAMPLE_RATE
from voxtral_desktop.platform.audio_capture import (
    FileMicrophone,
    Resampler16k,
    RingBuffer,
    SoundDeviceMicrophone,
    level_dbfs,
    list_input_devices,
)
from voxtral_desktop.platform.base import AudioDeviceError


def test_ring_buffer_positions_wrap_and_overrun() -> None:
    ring = RingBuffer(10)
    ring.write(np.arange(7, dtype=np.float32))
    out, pos = ring.read(0)
    assert out.tolist() == list(range(7)) and pos == 7
    ring.write(np.arange(7, 13, dtype=np.float32))  # wraps
    out, pos = ring.read(pos)
    assert out.tolist() == list(range(7, 13)) and pos == 13
    assert ring.latest(4).tolist() == [9, 10, 11, 12]
    out, pos = ring.read(0)  # fell behind: the oldest 3 are gone
    assert out.tolist() == list(range(3, 13)) and pos == 13
    out, pos = ring.read(5, max_samples=2)
    assert out.tolist() == [5, 6] and pos == 7


@pytest.mark.parametrize("rate", [44_100, 48_000, 8_000])
def test_resampler_keeps_a_tone(rate: int) -> None:
    t = np.arange(rate) / rate  # 1 s
    x = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    r = Resampler16k(rate)
    pieces = [r.push(x[i : i + 480]) for i in range(0, x.size, 480)]  # 10 ms blocks, like a stream
    y = np.concatenate([*pieces, r.flush()])
    assert abs(y.size - SAMPLE_RATE) <= 40
    ref = 0.5 * np.sin(2 * np.pi * 440 * np.arange(y.size) / SAMPLE_RATE)
    # Align for the filter delay, then compare away from the edges.
    lag = int(np.argmax(np.correlate(y[2000:4000], ref[2000:2200], mode="valid")))
    err = np.abs(y[2000 + lag : 14000 + lag] - ref[2000:14000]).max()
    assert err < 0.01, err


def test_resampler_at_16k_is_exact() -> None:
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    assert np.array_equal(Resampler16k(16_000).push(x), x)


def test_level_meter() -> None:
    assert level_dbfs(np.zeros(100, np.float32)) == -100.0
    assert abs(level_dbfs(np.full(100, 0.5, np.float32)) - (-6.02)) < 0.01


class FakeStream:
    """Stands in for sounddevice.InputStream: the test pushes blocks and can 'unplug' it."""

    instances: ClassVar[list[FakeStream]] = []

    def __init__(
        self,
        *,
        device: int,
        samplerate: int,
        channels: int,
        dtype: str,
        callback: Any,
        finished_callback: Any,
    ) -> None:
        self.device, self.samplerate, self.callback, self.finished = (
            device,
            samplerate,
            callback,
            finished_callback,
        )
        self.active = False
        FakeStream.instances.append(self)

    def start(self) -> None:
        self.active = True

    def stop(self) -> None:
        self.active = False

    def close(self) -> None:
        pass

    def push(self, block: np.ndarray) -> None:
        self.callback(block.reshape(-1, 1), block.size, None, None)

    def unplug(self) -> None:
        self.active = False
        self.finished()  # what PortAudio does when the device goes away


class FakeSoundDevice:
    def __init__(self, devices: list[dict[str, Any]], default_input: int = 0) -> None:
        self.devices = devices
        self.default = type("Default", (), {"device": (default_input, -1)})()
        self.InputStream = FakeStream

    def query_devices(self) -> list[dict[str, Any]]:
        return self.devices


MIC = {"name": "USB mic", "max_input_channels": 1, "default_samplerate": 48_000.0}
SPEAKER = {"name": "HDMI out", "max_input_channels": 0, "default_samplerate": 48_000.0}


def test_no_input_device_is_a_clear_error() -> None:
    backend = FakeSoundDevice([SPEAKER])
    assert list_input_devices(backend) == []
    mic = SoundDeviceMicrophone(backend=backend)
    with pytest.raises(AudioDeviceError, match="no microphone found"):
        mic.start()


def test_capture_preroll_and_unplug_then_recover() -> None:
    FakeStream.instances.clear()
    backend = FakeSoundDevice([SPEAKER, MIC], default_input=1)
    mic = SoundDeviceMicrophone(backend=backend, preroll_s=0.25)
    mic.start()
    stream = FakeStream.instances[-1]
    assert (stream.device, stream.samplerate, mic.sample_rate, mic.name) == (1, 48_000, 48_000, "USB mic")
    stream.push(np.ones(48_000, np.float32))  # 1 s before the key goes down
    start = mic.begin_utterance()
    assert mic.ring.written - start == 12_000  # 0.25 s of pre-roll at 48 kHz
    mic.check()  # healthy
    assert mic.level_dbfs() == pytest.approx(0.0, abs=0.01)
    stream.unplug()
    with pytest.raises(AudioDeviceError, match="stopped delivering audio"):
        mic.check()
    backend.devices = [SPEAKER]  # still gone
    assert not mic.recover()
    backend.devices = [SPEAKER, MIC]  # plugged back in
    assert mic.recover()
    assert FakeStream.instances[-1] is not stream and FakeStream.instances[-1].active
    mic.check()


def test_missing_device_name_falls_back_to_default() -> None:
    FakeStream.instances.clear()
    mic = SoundDeviceMicrophone("gone mic", backend=FakeSoundDevice([MIC]))
    mic.start()
    assert mic.name == "USB mic"


def _write_wav(path: Path, x: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.round(x * 32767).astype("<i2").tobytes())


def test_file_microphone_plays_the_file_once_per_utterance(tmp_path: Path) -> None:
    x = (0.3 * np.sin(np.arange(8000) / 5)).astype(np.float32)
    _write_wav(tmp_path / "a.wav", x)
    mic = FileMicrophone(tmp_path / "a.wav", speed=float("inf"))
    mic.start()
    try:
        assert mic.ring.written == 0  # silent until an utterance begins
        start = mic.begin_utterance()
        assert mic.finished.wait(5)
        got, _ = mic.ring.read(start)
        assert np.abs(got - np.round(x * 32767) / 32767).max() < 1e-4
        assert got.size == x.size  # nothing after the end
        start = mic.begin_utterance()  # plays again
        assert mic.finished.wait(5) and mic.ring.read(start)[0].size == x.size
    finally:
        mic.stop()


def test_file_microphone_real_time_pacing(tmp_path: Path) -> None:
    _write_wav(tmp_path / "b.wav", np.zeros(SAMPLE_RATE // 2, np.float32))  # 0.5 s
    mic = FileMicrophone(tmp_path / "b.wav")
    mic.start()
    try:
        import time

        t0 = time.monotonic()
        mic.begin_utterance()
        assert mic.finished.wait(5)
        assert 0.45 <= time.monotonic() - t0 < 1.5
    finally:
        mic.stop()


def test_file_microphone_bad_file(tmp_path: Path) -> None:
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    with pytest.raises(AudioDeviceError, match="cannot use the input file"):
        FileMicrophone(tmp_path / "bad.wav").start()


def test_callback_only_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The audio-thread callback touches nothing but the ring buffer."""
    FakeStream.instances.clear()
    mic = SoundDeviceMicrophone(backend=FakeSoundDevice([MIC]))
    mic.start()
    calls: list[int] = []
    monkeypatch.setattr(mic.ring, "write", lambda x: calls.append(len(x)))
    FakeStream.instances[-1].push(np.zeros(480, np.float32))
    assert calls == [480]
