"""Test doubles for the engine, the audio source, the injector and the hotkey."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from voxtral_desktop.config import SAMPLE_RATE, StreamConfig
from voxtral_desktop.engine.events import ModelInfo, SessionUpdate, TimedToken
from voxtral_desktop.errors import ModelFileError
from voxtral_desktop.platform.audio_capture import RingBuffer, level_dbfs
from voxtral_desktop.platform.base import (
    AudioDeviceError,
    HotkeyError,
    HotkeySpec,
    InjectionError,
    TargetWindowGone,
    WindowInfo,
)

WORDS = ("héllo ", "wörld ", "Straße ", "日本 ", "ok ")
SAMPLES_PER_WORD = 1600  # one word per 0.1 s of audio


class FakeSession:
    """Emits one word per 0.1 s of audio fed, whatever the chunking; '.' on flush."""

    def __init__(
        self, eos_after: int | None = None, words: tuple[str, ...] = WORDS, flush_text: str = "."
    ) -> None:
        self.words, self.flush_text = words, flush_text
        self.samples = 0
        self.fed: list[np.ndarray] = []
        self.finished = False
        self.resets = 0
        self.eos_after = eos_after  # end the stream (like EOS) after this many words

    def feed(self, pcm: np.ndarray) -> SessionUpdate:
        if self.finished:
            return SessionUpdate(finished=True)
        self.fed.append(np.array(pcm, np.float32))
        before = self.samples // SAMPLES_PER_WORD
        self.samples += pcm.size
        after = self.samples // SAMPLES_PER_WORD
        if self.eos_after is not None:
            after = min(after, self.eos_after)
            self.finished = after >= self.eos_after
        tokens = tuple(
            TimedToken(1000 + i, i, i * 0.1, self.words[i % len(self.words)]) for i in range(before, after)
        )
        return SessionUpdate(tokens, finished=self.finished)

    def flush(self) -> SessionUpdate:
        self.finished = True
        return SessionUpdate((TimedToken(1999, 0, 0.0, self.flush_text),), finished=True)

    def reset(self) -> None:
        self.samples, self.finished = 0, False
        self.fed.clear()
        self.resets += 1

    @property
    def all_audio(self) -> np.ndarray:
        return np.concatenate(self.fed) if self.fed else np.zeros(0, np.float32)


def expected_text(n_samples: int) -> str:
    return "".join(WORDS[i % len(WORDS)] for i in range(n_samples // SAMPLES_PER_WORD)) + "."


@dataclass
class FakeEngine:
    session_obj: FakeSession = field(default_factory=FakeSession)
    info: ModelInfo = field(default_factory=lambda: ModelInfo("fake model", "cpu (float32): test", 1))
    default_delay_ms: int = 480
    configs: list[StreamConfig] = field(default_factory=list)

    def session(self, config: StreamConfig | None = None) -> FakeSession:
        self.configs.append(config or StreamConfig())
        return self.session_obj


def fake_loader(engine: FakeEngine) -> Callable[[str, str, str], FakeEngine]:
    def load(path: str, device: str, kernel: str) -> FakeEngine:
        if "missing" in path:
            raise ModelFileError(f"no such file or directory: {path}")
        return engine

    return load


class FakeSource:
    """An AudioSource whose samples the test writes; `unplug()` makes `check` fail."""

    def __init__(self, rate: int = SAMPLE_RATE, name: str = "fake mic") -> None:
        self.name, self.sample_rate = name, rate
        self.ring = RingBuffer(rate * 30)
        self.started = self.stopped = 0
        self.lost = False
        self.can_recover = True
        self.fail_start: str | None = None

    def start(self) -> None:
        if self.fail_start:
            raise AudioDeviceError(self.fail_start)
        self.started += 1

    def stop(self) -> None:
        self.stopped += 1

    def begin_utterance(self) -> int:
        return self.ring.written

    def check(self) -> None:
        if self.lost:
            raise AudioDeviceError(f"the microphone {self.name} stopped delivering audio (unplugged?)")

    def recover(self) -> bool:
        """Like the real microphone: reopen the device, which fails while it is still missing."""
        if self.fail_start or not self.can_recover:
            return False
        self.lost = False
        return True

    def level_dbfs(self) -> float:
        return level_dbfs(self.ring.latest(800))

    def unplug(self) -> None:
        self.lost = True


NOTES = WindowInfo("notes", "kate", 42)


class FakeInjector:
    """Records what it was asked to type; can be told to fail like a closed window."""

    name = "fake"

    def __init__(self, window: WindowInfo | None = NOTES) -> None:
        self.window = window
        self.typed: list[str] = []
        self.fail_after_chars: int | None = None
        self.closed = False
        self.lock = threading.Lock()

    def focused_window(self) -> WindowInfo | None:
        return self.window

    def type_text(self, text: str, target: WindowInfo | None = None) -> None:
        with self.lock:
            done = len("".join(self.typed))
            if self.fail_after_chars is not None and done + len(text) > self.fail_after_chars:
                keep = max(0, self.fail_after_chars - done)
                self.typed.append(text[:keep])
                raise TargetWindowGone(
                    f"{target.describe() if target else 'the window'} was closed while typing", keep
                )
            self.typed.append(text)

    def close(self) -> None:
        self.closed = True


class BrokenInjectorFactory:
    def __call__(self) -> FakeInjector:
        raise InjectionError("cannot type into other windows: the X server has no XTEST extension")


class FakeHotkey:
    """A listener the test presses by calling `press()`/`release()` (from any thread)."""

    def __init__(self, spec: HotkeySpec, taken: bool = False) -> None:
        self.spec, self.taken = spec, taken
        self.on_press: Callable[[], None] | None = None
        self.on_release: Callable[[], None] | None = None
        self.stopped = False

    def start(self, on_press: Callable[[], None], on_release: Callable[[], None]) -> None:
        if self.taken:
            raise HotkeyError(
                f"{self.spec.label()} is already used as a global shortcut by another application; "
                "choose another push-to-talk key in Settings"
            )
        self.on_press, self.on_release = on_press, on_release

    def stop(self) -> None:
        self.stopped = True

    def press(self) -> None:
        assert self.on_press is not None
        threading.Thread(target=self.on_press).start()  # like the X listener: another thread

    def release(self) -> None:
        assert self.on_release is not None
        threading.Thread(target=self.on_release).start()
