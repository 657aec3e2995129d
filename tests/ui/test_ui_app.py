"""The controller and main window together, with a fake engine, microphone, injector and key."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fakes import (
    BrokenInjectorFactory,
    FakeEngine,
    FakeHotkey,
    FakeInjector,
    FakeSource,
    expected_text,
    fake_loader,
)
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QGuiApplication, QKeyEvent
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from voxtral_desktop.platform.base import HotkeySpec
from voxtral_desktop.platform.history import HistoryStore, Status
from voxtral_desktop.ui.controller import Controller
from voxtral_desktop.ui.events import ModelStatus, UtteranceEnded
from voxtral_desktop.ui.main_window import MainWindow
from voxtral_desktop.ui.settings import AppSettings

TIMEOUT_MS = 5000


@dataclass
class Parts:
    window: MainWindow
    history: HistoryStore
    controller: Controller
    source: FakeSource
    injector: FakeInjector
    hotkeys: list[FakeHotkey]

    @property
    def hotkey(self) -> FakeHotkey:
        return self.hotkeys[-1]


def _build(
    qtbot: QtBot,
    tmp_path: Path,
    *,
    settings: AppSettings | None = None,
    source: FakeSource | None = None,
    injector_factory: object | None = None,
    hotkey_taken: bool = False,
    wait_for: ModelStatus = ModelStatus.READY,
) -> Parts:
    history = HistoryStore(tmp_path / "history.sqlite3")
    window = MainWindow(history)
    qtbot.addWidget(window)
    injector = FakeInjector()
    hotkeys: list[FakeHotkey] = []

    def make_hotkey(spec: HotkeySpec) -> FakeHotkey:
        hotkeys.append(FakeHotkey(spec, taken=hotkey_taken))
        return hotkeys[-1]

    make_injector = injector_factory or (lambda: injector)
    controller = Controller(
        window,
        history,
        settings or AppSettings(model_path="model.gguf", hotkey="F9"),
        make_injector=make_injector,  # type: ignore[arg-type]
        make_hotkey=make_hotkey,
        loader=fake_loader(FakeEngine()),
    )
    src = source or FakeSource()
    with qtbot.waitSignal(
        controller.model_changed, timeout=TIMEOUT_MS, check_params_cb=lambda s: s.status is wait_for
    ):
        controller.start(src)
    window.show()
    return Parts(window, history, controller, src, injector, hotkeys)


@pytest.fixture
def parts(qtbot: QtBot, tmp_path: Path) -> Iterator[Parts]:
    p = _build(qtbot, tmp_path)
    yield p
    p.controller.shutdown()


def _talk(
    qtbot: QtBot, p: Parts, n_samples: int, *, press: object = None, release: object = None
) -> UtteranceEnded:
    """Hold the key, speak `n_samples` of audio, let go; returns the ended utterance."""
    with qtbot.waitSignal(p.controller.audio_flowing, timeout=TIMEOUT_MS):
        (press or p.hotkey.press)()  # type: ignore[operator]
    p.source.ring.write(np.zeros(n_samples, np.float32))
    with qtbot.waitSignal(p.controller.utterance_finished, timeout=TIMEOUT_MS) as ended:
        (release or p.hotkey.release)()  # type: ignore[operator]
    return ended.args[0]


def test_push_to_talk_types_shows_and_saves_the_text(qtbot: QtBot, parts: Parts) -> None:
    p = parts
    assert "F9" in p.window.hotkey_label.text() and "hold" in p.window.hotkey_label.text()
    assert p.window.model_label.text() == "Model ready: model.gguf on cpu (float32), delay 480 ms"
    assert "fake model" in p.window.model_label.toolTip()
    ended = _talk(qtbot, p, 8000)
    want = expected_text(8000)
    assert ended.text == want and not ended.problem
    assert p.window.caption.toPlainText() == want
    qtbot.waitUntil(lambda: "".join(p.injector.typed) == want, timeout=TIMEOUT_MS)
    entry = p.history.get(ended.utterance_id)
    assert entry is not None and entry.text == want and entry.status is Status.DONE
    assert (entry.app, entry.window) == ("kate", "notes") and entry.duration_s == pytest.approx(0.5)
    assert p.window.history_view.table.item(0, 3).text() == want
    assert p.window.problem_text == ""


def test_toggle_mode(qtbot: QtBot, tmp_path: Path) -> None:
    p = _build(qtbot, tmp_path, settings=AppSettings(model_path="m.gguf", hotkey="F9", ptt_mode="toggle"))
    try:
        with qtbot.waitSignal(p.controller.recording_changed, timeout=TIMEOUT_MS):
            p.hotkey.press()
        assert p.hotkey.on_release is not None
        p.hotkey.on_release()  # from this (GUI) thread the release is handled synchronously
        assert p.controller.recording  # releasing does not stop a toggled recording
        with qtbot.waitSignal(p.controller.utterance_finished, timeout=TIMEOUT_MS):
            p.hotkey.press()
        assert not p.controller.recording
    finally:
        p.controller.shutdown()


def test_target_window_closing_while_typing_loses_no_text(qtbot: QtBot, parts: Parts) -> None:
    p = parts
    p.injector.fail_after_chars = 8
    ended = _talk(qtbot, p, 8000)
    want = expected_text(8000)
    qtbot.waitUntil(
        lambda: "notes (kate) was closed while typing" in p.window.problem_text, timeout=TIMEOUT_MS
    )
    assert p.window.caption.toPlainText() == want  # all of it on screen
    assert "".join(p.injector.typed) == want[:8]  # the target got only what it got
    assert "history" in p.window.problem_text
    qtbot.waitUntil(
        lambda: p.history.get(ended.utterance_id).status is Status.NOT_DELIVERED, timeout=TIMEOUT_MS
    )  # type: ignore[union-attr]
    entry = p.history.get(ended.utterance_id)
    assert entry is not None and entry.text == want and "closed" in entry.note
    assert p.window.history_view.table.item(0, 3).text().endswith(want)


def test_hotkey_taken_is_shown_and_the_button_still_works(qtbot: QtBot, tmp_path: Path) -> None:
    p = _build(qtbot, tmp_path, hotkey_taken=True)
    try:
        assert "F9 is already used as a global shortcut by another application" in p.window.problem_text
        assert "unavailable" in p.window.hotkey_label.text()
        button = p.window.talk_button
        ended = _talk(
            qtbot,
            p,
            3200,
            press=lambda: qtbot.mousePress(button, Qt.MouseButton.LeftButton),
            release=lambda: qtbot.mouseRelease(button, Qt.MouseButton.LeftButton),
        )
        assert ended.text == expected_text(3200) == p.window.caption.toPlainText()
        assert p.injector.typed == []  # the on-screen button never types into other windows
    finally:
        p.controller.shutdown()


def test_no_input_device_is_a_clear_message_and_no_crash(qtbot: QtBot, tmp_path: Path) -> None:
    source = FakeSource()
    source.fail_start = "no microphone found: connect one, or check that the sound system is running"
    source.can_recover = False
    p = _build(qtbot, tmp_path, source=source)
    try:
        qtbot.waitUntil(lambda: "no microphone found" in p.window.problem_text, timeout=TIMEOUT_MS)
        with qtbot.waitSignal(p.controller.utterance_finished, timeout=TIMEOUT_MS) as ended:
            p.hotkey.press()
        assert ended.args[0].problem == "no microphone is available"
        assert p.window.problem_text.startswith("no microphone is available")
        assert not p.controller.recording
        p.hotkey.release()
    finally:
        p.controller.shutdown()


def test_device_unplugged_mid_utterance(qtbot: QtBot, parts: Parts) -> None:
    p = parts
    p.source.can_recover = False
    with qtbot.waitSignal(p.controller.audio_flowing, timeout=TIMEOUT_MS):
        p.hotkey.press()
    with qtbot.waitSignal(p.controller.text_received, timeout=TIMEOUT_MS):
        p.source.ring.write(np.zeros(4800, np.float32))
    with qtbot.waitSignal(p.controller.utterance_finished, timeout=TIMEOUT_MS) as ended:
        p.source.unplug()
    want = expected_text(4800)
    assert ended.args[0].text == want
    assert "stopped delivering audio" in p.window.problem_text and "kept" in p.window.problem_text
    entry = p.history.get(ended.args[0].utterance_id)
    assert entry is not None and entry.text == want and entry.status is Status.INTERRUPTED
    assert not p.controller.recording
    p.hotkey.release()  # the late release is harmless


def test_missing_model_is_shown(qtbot: QtBot, tmp_path: Path) -> None:
    p = _build(
        qtbot,
        tmp_path,
        settings=AppSettings(model_path="/models/missing.gguf", hotkey="F9"),
        wait_for=ModelStatus.FAILED,
    )
    try:
        assert p.window.model_label.text() == "Model failed to load"
        assert p.window.model_label.toolTip() == "no such file or directory: /models/missing.gguf"
        assert "could not be loaded" in p.window.problem_text
        assert not p.window.talk_button.isEnabled()
        with qtbot.waitSignal(p.controller.utterance_finished, timeout=TIMEOUT_MS) as ended:
            p.hotkey.press()
        assert "no model is loaded" in ended.args[0].problem
    finally:
        p.controller.shutdown()


def test_typing_unavailable_still_dictates_into_the_app(qtbot: QtBot, tmp_path: Path) -> None:
    p = _build(qtbot, tmp_path, injector_factory=BrokenInjectorFactory())
    try:
        qtbot.waitUntil(lambda: "no XTEST extension" in p.window.problem_text, timeout=TIMEOUT_MS)
        ended = _talk(qtbot, p, 1600)
        assert p.window.caption.toPlainText() == ended.text == expected_text(1600)
        assert p.history.get(ended.utterance_id).status is Status.DONE  # type: ignore[union-attr]
    finally:
        p.controller.shutdown()


def _type_unicode(widget: object, text: str) -> None:
    """QTest.keyClicks aborts on non-ASCII; send the key events ourselves."""
    for ch in text:
        for kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
            QApplication.sendEvent(widget, QKeyEvent(kind, 0, Qt.KeyboardModifier.NoModifier, ch))  # type: ignore[arg-type]


def test_history_search_copy_delete(qtbot: QtBot, parts: Parts) -> None:
    p = parts
    for text in ("Große Straße", "日本語のテキスト", "plain words"):
        uid = p.history.begin()
        p.history.finish(uid, text=text, duration_s=1.0)
    view = p.window.history_view
    view.refresh()
    assert view.table.rowCount() == 3
    view.search.setFocus()
    _type_unicode(view.search, "日本")
    assert view.search.text() == "日本"
    assert view.table.rowCount() == 1 and view.table.item(0, 3).text() == "日本語のテキスト"
    view.table.selectRow(0)
    with qtbot.waitSignal(view.copied, timeout=TIMEOUT_MS):
        qtbot.mouseClick(view.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == "日本語のテキスト"
    view.search.clear()
    _type_unicode(view.search, "STRASSE")
    assert view.table.rowCount() == 1
    view.table.selectRow(0)
    qtbot.mouseClick(view.delete_button, Qt.MouseButton.LeftButton)
    assert view.table.rowCount() == 0
    view.search.clear()
    assert [view.table.item(r, 3).text() for r in range(view.table.rowCount())] == [
        "plain words",
        "日本語のテキスト",
    ]


def test_level_meter_follows_the_microphone(qtbot: QtBot, parts: Parts) -> None:
    parts.source.ring.write(np.full(1600, 0.5, np.float32))
    qtbot.waitUntil(lambda: parts.window.level_bar.value() > 80, timeout=TIMEOUT_MS)
