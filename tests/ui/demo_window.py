"""Render the main window after a few dictations with readable words (a scripted engine, so the
screenshot shows what the app looks like with a real model), and save it as a PNG.

    DISPLAY=:N python tests/ui/demo_window.py OUT.png
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from fakes import FakeEngine, FakeHotkey, FakeInjector, FakeSession, FakeSource, fake_loader
from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from voxtral_desktop.platform.audio_capture import InputDevice
from voxtral_desktop.platform.base import WindowInfo
from voxtral_desktop.platform.history import HistoryStore
from voxtral_desktop.ui.controller import Controller
from voxtral_desktop.ui.main_window import MainWindow
from voxtral_desktop.ui.settings import AppSettings
from voxtral_desktop.ui.tray import app_icon

SENTENCES = (
    ("Meeting notes for Thursday: ", "the café on ", "Hauptstraße ", "opens at nine. "),
    ("Remind Chloé to book ", "the flight to ", "東京 ", "before Friday. "),
    ("Dear team, ", "the release ", "is ready ", "for review."),
)


def _wait(signal: object, timeout_ms: int = 5000) -> None:
    loop = QEventLoop()
    signal.connect(loop.quit)  # type: ignore[attr-defined]
    QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec()


def main() -> int:
    out = Path(sys.argv[1])
    app = QApplication(sys.argv[:1])
    app.setApplicationDisplayName("Voxtral Desktop")
    history = HistoryStore(Path(tempfile.mkdtemp()) / "history.sqlite3")
    window = MainWindow(history)
    window.setWindowIcon(app_icon())
    source = FakeSource()
    engine = FakeEngine(FakeSession(flush_text=""))
    injector = FakeInjector(WindowInfo("notes.txt — Kate", "kate", 7))
    injector.name = "xtest"
    controller = Controller(
        window,
        history,
        AppSettings(model_path="/models/voxtral-mini-4b-realtime-q4_0.gguf", hotkey="ctrl+alt+space"),
        make_injector=lambda: injector,
        make_hotkey=lambda spec: FakeHotkey(spec),
        loader=fake_loader(engine),
    )
    window.set_devices(
        [InputDevice(0, "Built-in Microphone", 48_000, True), InputDevice(1, "USB Headset", 16_000, False)],
        "",
    )
    controller.start(source)
    window.show()
    _wait(controller.model_changed)
    for words in SENTENCES:
        engine.session_obj.words = words
        controller.start_utterance()
        _wait(controller.audio_flowing)
        source.ring.write(np.zeros(1600 * len(words), np.float32))
        controller.stop_utterance()
        _wait(controller.utterance_finished)
    source.ring.write((0.3 * np.sin(np.arange(1600) / 3)).astype(np.float32))  # the level meter moves
    loop = QEventLoop()
    QTimer.singleShot(300, loop.quit)
    loop.exec()
    ok = window.grab().save(str(out), "PNG")
    controller.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
