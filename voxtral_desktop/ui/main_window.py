"""The main window: a view only. It shows what it is told and emits what the user asks for;
the `Controller` decides everything."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TypeVar

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QCloseEvent, QFont
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from voxtral_desktop.platform.audio_capture import InputDevice
from voxtral_desktop.platform.history import HistoryStore
from voxtral_desktop.ui.events import AudioStatus, ModelState, ModelStatus, UtteranceStarted
from voxtral_desktop.ui.history_view import HistoryView

log = logging.getLogger(__name__)

WINDOW_TITLE = "Voxtral Desktop"
LEVEL_FLOOR_DB = -60.0
MAX_PROBLEMS = 4
_STATUS_TEXT = {
    ModelStatus.NONE: "No model — choose one to start",
    ModelStatus.LOADING: "Loading model…",
    ModelStatus.READY: "Model ready",
    ModelStatus.FAILED: "Model failed to load",
}


W = TypeVar("W", bound=QWidget)


def _named(widget: W, name: str) -> W:
    """Give a widget an object name (what tests and style sheets find it by)."""
    widget.setObjectName(name)
    return widget


class MainWindow(QMainWindow):
    talk_pressed = Signal()
    talk_released = Signal()
    device_chosen = Signal(str)  # "" = system default
    settings_requested = Signal()
    model_requested = Signal()
    close_requested = Signal()  # the window was closed: the app hides to the tray or quits

    def __init__(self, history: HistoryStore) -> None:
        super().__init__()
        self.setWindowTitle(WINDOW_TITLE)
        self.setObjectName("mainWindow")
        self.resize(860, 620)

        self.model_label = _named(QLabel(_STATUS_TEXT[ModelStatus.NONE]), "modelStatus")
        # Long paths and messages must not widen the window: the label is clipped, the full text
        # is in its tooltip and in the problem banner (which wraps).
        self.model_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.model_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.model_button = QPushButton("Model…")
        self.settings_button = QPushButton("Settings…")
        top = QHBoxLayout()
        top.addWidget(self.model_label, 1)
        top.addWidget(self.model_button)
        top.addWidget(self.settings_button)

        self.banner = _named(QLabel(), "problemBanner")
        self.banner.setWordWrap(True)
        self.banner.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.banner.setStyleSheet(
            "QLabel { background: #fdecea; color: #611a15; padding: 6px; border-radius: 4px; }"
        )
        self.banner_close = QToolButton()
        self.banner_close.setText("✕")
        self.banner_close.setToolTip("Dismiss")
        banner_row = QHBoxLayout()
        banner_row.addWidget(self.banner, 1)
        banner_row.addWidget(self.banner_close)
        self._banner_box = QFrame()
        self._banner_box.setLayout(banner_row)
        self._banner_box.hide()

        self.caption = _named(QPlainTextEdit(), "caption")
        self.caption.setReadOnly(True)
        font = QFont(self.caption.font())
        font.setPointSize(20)
        self.caption.setFont(font)
        self.caption.setPlaceholderText(
            "Hold the push-to-talk key and speak; the text appears here and in the focused window."
        )

        self.device_combo = _named(QComboBox(), "inputDevice")
        self.device_combo.setMinimumWidth(220)
        self.level_bar = _named(QProgressBar(), "level")
        self.level_bar.setTextVisible(False)
        self.level_bar.setRange(0, 100)
        self.level_bar.setFixedWidth(120)
        self.hotkey_label = _named(QLabel(), "hotkey")
        self.talk_button = _named(QPushButton("Hold to talk"), "talkButton")
        self.talk_button.setToolTip("Records while held; the text is shown here but typed nowhere else")
        audio = QHBoxLayout()
        audio.addWidget(QLabel("Input:"))
        audio.addWidget(self.device_combo)
        audio.addWidget(self.level_bar)
        audio.addStretch(1)
        audio.addWidget(self.hotkey_label)
        audio.addWidget(self.talk_button)

        self.history_view = HistoryView(history)
        live = QWidget()
        live_layout = QVBoxLayout(live)
        live_layout.setContentsMargins(0, 0, 0, 0)
        live_layout.addWidget(self.caption)
        live_layout.addLayout(audio)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(live)
        splitter.addWidget(self.history_view)
        splitter.setSizes([330, 250])

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addLayout(top)
        layout.addWidget(self._banner_box)
        layout.addWidget(splitter, 1)
        self.setCentralWidget(central)
        self.typing_label = _named(QLabel(), "typingStatus")
        self.statusBar().addPermanentWidget(self.typing_label)

        self.talk_button.pressed.connect(self.talk_pressed)
        self.talk_button.released.connect(self.talk_released)
        self.model_button.clicked.connect(self.model_requested)
        self.settings_button.clicked.connect(self.settings_requested)
        self.banner_close.clicked.connect(self.clear_problem)
        self.device_combo.activated.connect(self._on_device_activated)
        self._current_utterance: int | None = None
        self._problems: list[str] = []

    # ---- shown state --------------------------------------------------------------------------
    def set_model_state(self, state: ModelState) -> None:
        text, tip = _STATUS_TEXT[state.status], state.message
        if state.status is ModelStatus.READY and state.info is not None:
            device = state.info.device.split(":")[0]
            text = f"Model ready: {Path(state.message).name} on {device}, delay {state.delay_ms} ms"
            tip = f"{state.info.source}\n{state.info.device}"
        elif state.status is ModelStatus.LOADING:
            text = f"Loading {Path(state.message).name}…"
        self.model_label.setText(text)
        self.model_label.setToolTip(tip)
        self.talk_button.setEnabled(state.status is ModelStatus.READY)

    def set_devices(self, devices: list[InputDevice], current: str, fixed: str = "") -> None:
        """Fill the input list; `fixed` names a source that is not a device (an input file)."""
        self.device_combo.clear()
        if fixed:
            self.device_combo.addItem(fixed, "")
            self.device_combo.setEnabled(False)
            return
        self.device_combo.setEnabled(True)
        self.device_combo.addItem("System default", "")
        for d in devices:
            self.device_combo.addItem(f"{d.name} ({d.default_rate} Hz)", d.name)
        index = self.device_combo.findData(current)
        self.device_combo.setCurrentIndex(max(0, index))

    def set_audio_status(self, status: AudioStatus) -> None:
        self.level_bar.setEnabled(status.ok)
        self.device_combo.setToolTip(status.device if status.ok else status.message)

    def set_level(self, dbfs: float) -> None:
        frac = (max(LEVEL_FLOOR_DB, min(0.0, dbfs)) - LEVEL_FLOOR_DB) / -LEVEL_FLOOR_DB
        self.level_bar.setValue(round(frac * 100))

    def set_hotkey(self, label: str, mode: str, problem: str = "") -> None:
        if problem:
            self.hotkey_label.setText(f"Push-to-talk key unavailable ({label})")
            self.hotkey_label.setToolTip(problem)
        else:
            how = "hold" if mode == "hold" else "press to start/stop"
            self.hotkey_label.setText(f"Push-to-talk: <b>{label}</b> ({how})")
            self.hotkey_label.setToolTip("")

    def set_typing_status(self, text: str) -> None:
        self.typing_label.setText(text)

    def show_problem(self, message: str) -> None:
        """Add a one-line problem to the banner (newest first; the same line is not repeated)."""
        older = [p for p in self._problems if p != message]
        self._problems = [message, *older[: MAX_PROBLEMS - 1]]
        self.banner.setText("\n".join(self._problems))
        self._banner_box.show()

    def clear_problem(self) -> None:
        self._problems = []
        self.banner.clear()
        self._banner_box.hide()

    @property
    def problem_text(self) -> str:
        return self.banner.text() if self._banner_box.isVisibleTo(self) else ""

    # ---- the live caption ---------------------------------------------------------------------
    def begin_caption(self, started: UtteranceStarted) -> None:
        self._current_utterance = started.utterance_id
        self.caption.clear()
        where = started.target.describe() if started.target else ""
        self.statusBar().showMessage(f"Listening… typing into {where}" if where else "Listening…")

    def append_caption(self, utterance_id: int, text: str) -> None:
        if utterance_id != self._current_utterance or not text:
            return
        cursor = self.caption.textCursor()
        cursor.movePosition(cursor.MoveOperation.End)
        cursor.insertText(text)
        self.caption.setTextCursor(cursor)
        self.caption.ensureCursorVisible()

    def end_caption(self, utterance_id: int, duration_s: float) -> None:
        if utterance_id == self._current_utterance:
            self.statusBar().showMessage(f"Done ({duration_s:.1f} s of audio)", 5000)

    # ---- internals ----------------------------------------------------------------------------
    def _on_device_activated(self, index: int) -> None:
        self.device_chosen.emit(str(self.device_combo.itemData(index) or ""))

    def closeEvent(self, event: QCloseEvent) -> None:
        self.close_requested.emit()
        event.accept()
