"""The controller: the GUI-thread object that turns key presses into utterances.

It owns the two worker threads (engine, typist), the global hotkey and the history store, and
tells the main window what to show. Every utterance is written to the history as it happens;
whatever goes wrong (no model, microphone lost, typing blocked, window closed, hotkey taken) is
shown in the window's banner in one line, and the recognised text always stays in the caption
and the history.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QMetaObject, QObject, Qt, QThread, QTimer, Signal, Slot

from voxtral_desktop.platform.audio_capture import AudioSource
from voxtral_desktop.platform.base import HotkeyError, HotkeyListener, HotkeySpec, TextInjector
from voxtral_desktop.platform.history import HistoryStore, Status
from voxtral_desktop.ui.events import (
    AudioStatus,
    DeliveryFailed,
    ModelState,
    ModelStatus,
    TextDelta,
    UtteranceEnded,
    UtteranceStarted,
)
from voxtral_desktop.ui.main_window import MainWindow
from voxtral_desktop.ui.settings import AppSettings
from voxtral_desktop.ui.typist import Typist
from voxtral_desktop.ui.worker import EngineLoader, EngineWorker, load_real_engine

log = logging.getLogger(__name__)

LEVEL_INTERVAL_MS = 50
KEEP_TAKES = 20


@dataclass
class _Take:
    """Bookkeeping of one utterance on the GUI side."""

    utterance_id: int
    text: str = ""
    failure: DeliveryFailed | None = None
    ended: UtteranceEnded | None = None


class Controller(QObject):
    # queued calls into the worker threads
    _load_model = Signal(str, str, str, int)
    _set_source = Signal(object)
    _begin_engine = Signal(int)
    _end_engine = Signal()
    _typist_begin = Signal(int, float, bool)
    _own_windows = Signal(object)
    _reserve_keys = Signal(object)
    # hotkey thread -> GUI thread
    _hotkey_down = Signal()
    _hotkey_up = Signal()
    # for the tray, tests and anyone watching (all emitted in the GUI thread)
    recording_changed = Signal(bool)
    audio_flowing = Signal(int)  # the engine reads audio for this utterance now
    text_received = Signal(object)  # TextDelta
    utterance_finished = Signal(object)  # UtteranceEnded
    model_changed = Signal(object)  # ModelState

    def __init__(
        self,
        window: MainWindow,
        history: HistoryStore,
        settings: AppSettings,
        *,
        make_injector: Callable[[], TextInjector],
        make_hotkey: Callable[[HotkeySpec], HotkeyListener] | None,
        loader: EngineLoader = load_real_engine,
        save_audio_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.window, self.history, self.settings = window, history, settings
        self._make_hotkey = make_hotkey
        self._hotkey: HotkeyListener | None = None
        self._source: AudioSource | None = None
        self._take: _Take | None = None
        self._takes: dict[int, _Take] = {}
        self.recording = False
        self.model_state = ModelState(ModelStatus.NONE)

        self.engine_thread, self.typist_thread = QThread(), QThread()
        self.engine_thread.setObjectName("engine")
        self.typist_thread.setObjectName("typist")
        self.worker = EngineWorker(loader, save_audio_dir=save_audio_dir)
        self.worker.moveToThread(self.engine_thread)
        self.typist = Typist(make_injector)
        self.typist.moveToThread(self.typist_thread)

        self._load_model.connect(self.worker.load_model)
        self._set_source.connect(self.worker.set_audio_source)
        self._begin_engine.connect(self.worker.begin_utterance)
        self._end_engine.connect(self.worker.end_utterance)
        self._typist_begin.connect(self.typist.begin)
        self._own_windows.connect(self.typist.set_own_windows)
        self._reserve_keys.connect(self.typist.reserve_keys)
        self.worker.text_delta.connect(self.typist.deliver)  # straight to the typist: no GUI hop
        self.worker.text_delta.connect(self._on_text)
        self.worker.utterance_ended.connect(self._on_ended)
        self.worker.model_state.connect(self._on_model_state)
        self.worker.audio_status.connect(self._on_audio_status)
        self.typist.target_found.connect(self._on_target)
        self.typist.delivery_failed.connect(self._on_delivery_failed)
        self.worker.recording_started.connect(self._on_recording_started)
        self.typist.ready.connect(self._on_typing_ready)
        self.typist.unavailable.connect(self._on_typing_unavailable)
        self.typist_thread.started.connect(self.typist.start)
        self._hotkey_down.connect(self._on_hotkey_down)
        self._hotkey_up.connect(self._on_hotkey_up)

        window.talk_pressed.connect(lambda: self.start_utterance(deliver=False))
        window.talk_released.connect(self.stop_utterance)
        self._level = QTimer(self)
        self._level.setInterval(LEVEL_INTERVAL_MS)
        self._level.timeout.connect(self._on_level)

    # ---- life cycle ---------------------------------------------------------------------------
    def start(self, source: AudioSource | None) -> None:
        self.engine_thread.start()
        self.typist_thread.start()
        self._own_windows.emit(frozenset({int(self.window.winId())}))
        self.set_audio_source(source)
        self.load_model(self.settings.model_path)
        self.set_hotkey(self.settings.hotkey)
        self._level.start()

    def shutdown(self) -> None:
        self._level.stop()
        if self._hotkey is not None:
            self._hotkey.stop()
            self._hotkey = None
        # Each worker stops its own timers in its own thread before the thread ends.
        for thread, obj in ((self.engine_thread, self.worker), (self.typist_thread, self.typist)):
            if thread.isRunning():
                QMetaObject.invokeMethod(obj, "shutdown", Qt.ConnectionType.BlockingQueuedConnection)
            thread.quit()
            thread.wait(10_000)
        self.history.close()

    def load_model(self, path: str) -> None:
        s = self.settings
        self._load_model.emit(path, s.compute_device, s.kernel, s.delay_ms)

    def set_audio_source(self, source: AudioSource | None) -> None:
        self._source = source
        self._set_source.emit(source)

    def set_hotkey(self, text: str) -> None:
        """(Re)grab the push-to-talk key; a failure is shown, never raised."""
        if self._hotkey is not None:
            self._hotkey.stop()
            self._hotkey = None
        try:
            spec = HotkeySpec.parse(text)
        except HotkeyError as exc:
            self.window.set_hotkey(text, self.settings.ptt_mode, str(exc))
            self.window.show_problem(str(exc))
            return
        if self._make_hotkey is None:
            self.window.set_hotkey(spec.label(), self.settings.ptt_mode, "global hotkeys are off")
            return
        try:
            listener = self._make_hotkey(spec)
            listener.start(self._hotkey_down.emit, self._hotkey_up.emit)
        except HotkeyError as exc:
            log.warning("push-to-talk key unavailable: %s", exc)
            self.window.set_hotkey(spec.label(), self.settings.ptt_mode, str(exc))
            self.window.show_problem(str(exc))
            return
        self._hotkey = listener
        self._reserve_keys.emit((spec.key,))
        self.window.set_hotkey(spec.label(), self.settings.ptt_mode)

    # ---- utterances ---------------------------------------------------------------------------
    @Slot()
    def start_utterance(self, deliver: bool = True) -> None:
        if self.recording:
            return
        self.recording = True
        started = time.time()
        uid = self.history.begin(started_at=started)
        self._take = self._takes[uid] = _Take(uid)
        self.window.begin_caption(UtteranceStarted(uid, started))
        self.window.history_view.refresh()
        self._typist_begin.emit(uid, started, deliver)
        self._begin_engine.emit(uid)
        self.recording_changed.emit(True)

    @Slot()
    def stop_utterance(self) -> None:
        if not self.recording:
            return
        self.recording = False
        self._end_engine.emit()
        self.recording_changed.emit(False)

    def toggle_recording(self) -> None:
        if self.recording:
            self.stop_utterance()
        else:
            self.start_utterance()

    def _on_hotkey_down(self) -> None:
        if self.settings.ptt_mode == "toggle":
            self.toggle_recording()
        else:
            self.start_utterance()

    def _on_hotkey_up(self) -> None:
        if self.settings.ptt_mode == "hold":
            self.stop_utterance()

    # ---- results from the workers ---------------------------------------------------------------
    def _on_target(self, started: UtteranceStarted) -> None:
        if started.target is not None:
            self.history.set_where(started.utterance_id, app=started.target.app, window=started.target.title)
            if self._take is not None and self._take.utterance_id == started.utterance_id:
                self.window.begin_caption(started)
            self.window.history_view.update_entry(started.utterance_id)

    def _on_recording_started(self, utterance_id: int) -> None:
        self.audio_flowing.emit(utterance_id)

    def _on_text(self, delta: TextDelta) -> None:
        take = self._takes.get(delta.utterance_id)
        self.text_received.emit(delta)
        if take is None or not delta.text:
            return
        take.text += delta.text
        self.history.update_text(take.utterance_id, take.text, delta.audio_s)
        self.window.append_caption(take.utterance_id, delta.text)
        self.window.history_view.update_entry(take.utterance_id)

    def _on_ended(self, ended: UtteranceEnded) -> None:
        take = self._takes.get(ended.utterance_id)
        if take is None:
            return
        take.ended = ended
        if self._take is take:
            self._take = None
            if self.recording:  # it ended on its own (microphone lost, no model)
                self.recording = False
                self.recording_changed.emit(False)
        status, note = Status.DONE, ""
        if take.failure is not None:
            status, note = Status.NOT_DELIVERED, take.failure.message
        elif ended.problem:
            status, note = Status.INTERRUPTED, ended.problem
        self.history.finish(
            ended.utterance_id, text=take.text, duration_s=ended.duration_s, status=status, note=note
        )
        self.window.end_caption(ended.utterance_id, ended.duration_s)
        self.window.history_view.update_entry(ended.utterance_id)
        if ended.problem:
            kept = " The text so far is kept in the history." if take.text else ""
            self.window.show_problem(ended.problem + kept)
        while len(self._takes) > KEEP_TAKES:  # a late typing failure still finds its take
            del self._takes[next(iter(self._takes))]
        log.info(
            "utterance %d ended: %d characters, %.2f s of audio",
            ended.utterance_id,
            len(take.text),
            ended.duration_s,
        )
        self.utterance_finished.emit(ended)

    def _on_delivery_failed(self, failure: DeliveryFailed) -> None:
        take = self._takes.get(failure.utterance_id)
        first = take is not None and take.failure is None
        if take is not None:
            take.failure = failure
        self.history.mark(failure.utterance_id, Status.NOT_DELIVERED, failure.message)
        log.info("utterance %d not delivered: %s", failure.utterance_id, failure.message)
        self.window.history_view.update_entry(failure.utterance_id)
        if first:
            self.window.show_problem(
                f"Typing stopped: {failure.message}. The full text is in the caption and the history "
                "(select it, then Copy)."
            )

    def _on_typing_ready(self, name: str) -> None:
        self.window.set_typing_status(f"Typing with {name}")

    def _on_typing_unavailable(self, message: str) -> None:
        self.window.set_typing_status("Not typing into other windows")
        self.window.show_problem(f"{message}. Dictated text will appear here and in the history only.")

    def _on_model_state(self, state: ModelState) -> None:
        log.info("model %s: %s", state.status.value, state.message)
        self.model_state = state
        self.window.set_model_state(state)
        if state.status is ModelStatus.FAILED:
            self.window.show_problem(f"The model could not be loaded: {state.message}")
        self.model_changed.emit(state)

    def _on_audio_status(self, status: AudioStatus) -> None:
        self.window.set_audio_status(status)
        log.log(
            logging.INFO if status.ok else logging.WARNING,
            "audio input %s: %s",
            status.device,
            status.message or "ok",
        )
        if not status.ok:
            self.window.show_problem(status.message)
        elif status.message:
            self.window.statusBar().showMessage(status.message, 5000)

    def _on_level(self) -> None:
        if self._source is not None:
            self.window.set_level(self._source.level_dbfs())
