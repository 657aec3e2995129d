"""The engine worker on its own QThread, driven through queued signals like the app does."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fakes import FakeEngine, FakeSession, FakeSource, expected_text, fake_loader
from PySide6.QtCore import QMetaObject, QObject, Qt, QThread, Signal
from pytestqt.qtbot import QtBot

from voxtral_desktop.ui.events import AudioStatus, ModelState, ModelStatus, TextDelta, UtteranceEnded
from voxtral_desktop.ui.worker import EngineLoader, EngineWorker, UtteranceText

TIMEOUT_MS = 5000


class Driver(QObject):
    load = Signal(str, str, str, int)
    source = Signal(object)
    begin = Signal(int)
    end = Signal()
    shutdown = Signal()


class Relay(QObject):
    """Re-emits the worker's signals in the test's (GUI) thread: qtbot.waitSignal must not be
    connected straight to a signal emitted from another thread (it would stop its timer there)."""

    model_state = Signal(object)
    recording_started = Signal(int)
    text_delta = Signal(object)
    utterance_ended = Signal(object)
    audio_status = Signal(object)

    def __init__(self, worker: EngineWorker) -> None:
        super().__init__()
        for name in ("model_state", "recording_started", "text_delta", "utterance_ended", "audio_status"):
            getattr(worker, name).connect(getattr(self, name), Qt.ConnectionType.QueuedConnection)


class Harness:
    def __init__(self, engine: FakeEngine | None, loader: EngineLoader | None = None) -> None:
        self.engine = engine or FakeEngine()
        self.worker = EngineWorker(
            loader or fake_loader(self.engine), pump_interval_ms=10, recover_interval_ms=50
        )
        self.thread = QThread()
        self.worker.moveToThread(self.thread)
        self.driver = Driver()
        self.driver.load.connect(self.worker.load_model)
        self.driver.source.connect(self.worker.set_audio_source)
        self.driver.begin.connect(self.worker.begin_utterance)
        self.driver.end.connect(self.worker.end_utterance)
        self.driver.shutdown.connect(self.worker.shutdown)
        self.events = Relay(self.worker)
        self.deltas: list[TextDelta] = []
        self.events.text_delta.connect(self.deltas.append)
        self.thread.start()

    def stop(self) -> None:
        QMetaObject.invokeMethod(self.worker, "shutdown", Qt.ConnectionType.BlockingQueuedConnection)
        self.thread.quit()
        self.thread.wait(5000)


@pytest.fixture
def harness(qtbot: QtBot) -> Iterator[Harness]:
    h = Harness(FakeEngine())
    yield h
    h.stop()


def _ready(qtbot: QtBot, h: Harness, source: FakeSource) -> None:
    with qtbot.waitSignal(h.events.audio_status, timeout=TIMEOUT_MS):
        h.driver.source.emit(source)
    with qtbot.waitSignal(
        h.events.model_state, timeout=TIMEOUT_MS, check_params_cb=lambda s: s.status is ModelStatus.READY
    ):
        h.driver.load.emit("model.gguf", "cpu", "auto", 0)


def _begin(qtbot: QtBot, h: Harness, utterance_id: int) -> None:
    """Start an utterance and wait until the worker reads audio for it (a real microphone's
    earlier audio would be pre-roll; the fake one has none)."""
    with qtbot.waitSignal(h.events.recording_started, timeout=TIMEOUT_MS):
        h.driver.begin.emit(utterance_id)


def test_utterance_streams_text_and_ends_with_all_of_it(qtbot: QtBot, harness: Harness) -> None:
    source = FakeSource()
    _ready(qtbot, harness, source)
    assert harness.engine.configs[-1].delay_ms == 480  # the engine's default when 0 is asked
    source.ring.write(np.full(8000, 0.5, np.float32))  # before the key: not part of the utterance
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, 16_000).astype(np.float32)
    _begin(qtbot, harness, 7)
    with qtbot.waitSignal(harness.events.text_delta, timeout=TIMEOUT_MS):
        source.ring.write(audio[:4000])  # 0.25 s: two words become decidable
    for i in range(4000, audio.size, 3000):
        source.ring.write(audio[i : i + 3000])
    with qtbot.waitSignal(harness.events.utterance_ended, timeout=TIMEOUT_MS) as ended:
        harness.driver.end.emit()
    result: UtteranceEnded = ended.args[0]
    assert result.utterance_id == 7 and result.problem == ""
    assert result.text == expected_text(audio.size) == "".join(d.text for d in harness.deltas)
    assert result.duration_s == pytest.approx(1.0)
    assert harness.deltas[-1].final and harness.deltas[0].utterance_id == 7
    session = harness.engine.session_obj
    qtbot.waitUntil(lambda: session.resets == 1, timeout=TIMEOUT_MS)  # reset right after, ready for the next


def test_the_session_gets_exactly_the_utterance_audio(qtbot: QtBot, harness: Harness) -> None:
    source = FakeSource()
    _ready(qtbot, harness, source)
    audio = np.random.default_rng(1).uniform(-0.5, 0.5, 12_345).astype(np.float32)
    fed: list[np.ndarray] = []
    session: FakeSession = harness.engine.session_obj
    original = session.feed
    session.feed = lambda pcm: (fed.append(np.array(pcm)), original(pcm))[1]  # type: ignore[method-assign]
    _begin(qtbot, harness, 1)
    for i in range(0, audio.size, 777):
        source.ring.write(audio[i : i + 777])
    with qtbot.waitSignal(harness.events.utterance_ended, timeout=TIMEOUT_MS):
        harness.driver.end.emit()
    assert np.array_equal(np.concatenate(fed), audio)


def test_a_48k_device_is_resampled_to_16k(qtbot: QtBot, harness: Harness) -> None:
    source = FakeSource(rate=48_000)
    _ready(qtbot, harness, source)
    _begin(qtbot, harness, 1)
    source.ring.write(np.zeros(48_000, np.float32))
    with qtbot.waitSignal(harness.events.utterance_ended, timeout=TIMEOUT_MS) as ended:
        harness.driver.end.emit()
    assert abs(ended.args[0].duration_s - 1.0) < 0.01


def test_missing_model_is_reported_and_talking_says_why(qtbot: QtBot, harness: Harness) -> None:
    with qtbot.waitSignal(harness.events.audio_status, timeout=TIMEOUT_MS):
        harness.driver.source.emit(FakeSource())
    states: list[ModelState] = []
    harness.events.model_state.connect(states.append)
    with qtbot.waitSignal(
        harness.events.model_state,
        timeout=TIMEOUT_MS,
        check_params_cb=lambda s: s.status is ModelStatus.FAILED,
    ):
        harness.driver.load.emit("/nowhere/missing.gguf", "cpu", "auto", 0)
    assert [s.status for s in states] == [ModelStatus.LOADING, ModelStatus.FAILED]
    assert states[-1].message == "no such file or directory: /nowhere/missing.gguf"
    with qtbot.waitSignal(harness.events.utterance_ended, timeout=TIMEOUT_MS) as ended:
        harness.driver.begin.emit(3)
    assert "no model is loaded" in ended.args[0].problem


def test_device_unplugged_mid_utterance_keeps_the_text_and_recovers(qtbot: QtBot, harness: Harness) -> None:
    source = FakeSource()
    _ready(qtbot, harness, source)
    statuses: list[AudioStatus] = []
    harness.events.audio_status.connect(statuses.append)
    _begin(qtbot, harness, 5)
    with qtbot.waitSignal(harness.events.text_delta, timeout=TIMEOUT_MS):
        source.ring.write(np.zeros(4800, np.float32))  # three words
    source.can_recover = False
    with qtbot.waitSignal(harness.events.utterance_ended, timeout=TIMEOUT_MS) as ended:
        source.unplug()
    result: UtteranceEnded = ended.args[0]
    assert "unplugged" in result.problem
    assert result.text == expected_text(4800)  # what was heard before the loss, flushed
    assert statuses[0].ok is False and "unplugged" in statuses[0].message
    with qtbot.waitSignal(harness.events.audio_status, timeout=TIMEOUT_MS, check_params_cb=lambda s: s.ok):
        source.can_recover = True  # plugged back in: the recovery timer finds it
    assert "is back" in statuses[-1].message
    # and dictation works again
    _begin(qtbot, harness, 6)
    source.ring.write(np.zeros(1600, np.float32))
    with qtbot.waitSignal(harness.events.utterance_ended, timeout=TIMEOUT_MS) as ended:
        harness.driver.end.emit()
    assert ended.args[0].text == expected_text(1600) and ended.args[0].problem == ""


def test_no_input_device_at_start(qtbot: QtBot, harness: Harness) -> None:
    source = FakeSource()
    source.fail_start = "no microphone found: connect one, or check that the sound system is running"
    with qtbot.waitSignal(harness.events.audio_status, timeout=TIMEOUT_MS) as status:
        harness.driver.source.emit(source)
    assert status.args[0].ok is False and status.args[0].message.startswith("no microphone found")
    with qtbot.waitSignal(
        harness.events.model_state,
        timeout=TIMEOUT_MS,
        check_params_cb=lambda s: s.status is ModelStatus.READY,
    ):
        harness.driver.load.emit("model.gguf", "cpu", "auto", 0)
    with qtbot.waitSignal(harness.events.utterance_ended, timeout=TIMEOUT_MS) as ended:
        harness.driver.begin.emit(1)
    assert ended.args[0].problem == "no microphone is available"


def test_early_end_of_stream_starts_a_new_one_while_the_key_is_held(qtbot: QtBot) -> None:
    h = Harness(FakeEngine(FakeSession(eos_after=2)))
    try:
        source = FakeSource()
        _ready(qtbot, h, source)
        _begin(qtbot, h, 1)
        source.ring.write(np.zeros(3200, np.float32))  # 2 words, then the model says EOS
        with qtbot.waitSignal(h.events.text_delta, timeout=TIMEOUT_MS):
            pass
        source.ring.write(np.zeros(1600, np.float32))  # keeps talking
        with qtbot.waitSignal(h.events.utterance_ended, timeout=TIMEOUT_MS) as ended:
            h.driver.end.emit()
        assert ended.args[0].text.startswith("héllo wörld héllo")
    finally:
        h.stop()


@pytest.mark.parametrize(
    "pieces",
    [
        [" Hello", " world", " ", "\n"],
        ["  ", " a", " ", " ", "b ", "c\n", "d", "  "],
        ["\n", "x"],
        ["", " ", ""],
        [" 日本", "語 ", "é"],
    ],
)
def test_typed_text_is_the_stripped_transcript_append_only(pieces: list[str]) -> None:
    shaper = UtteranceText()
    typed = [shaper.push(p) for p in pieces[:-1]] + [shaper.push(pieces[-1], final=True)]
    assert "".join(typed) == "".join(pieces).strip()
    partial = ""
    for piece in typed:  # every prefix typed so far is a prefix of the final text
        partial += piece
        assert "".join(pieces).strip().startswith(partial)
