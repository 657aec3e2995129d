"""The settings dialog: edits an `AppSettings` value; never touches QSettings itself."""

from __future__ import annotations

import dataclasses

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from voxtral_desktop.config import MAX_DELAY_MS, MIN_DELAY_MS, TOKEN_MS
from voxtral_desktop.errors import ConfigError
from voxtral_desktop.platform.typing import METHODS
from voxtral_desktop.ui.settings import DEVICES, PTT_MODES, AppSettings

# The 13 languages of Voxtral Mini 4B Realtime (engine.engine.LANGUAGES; repeated to keep torch
# out of the dialog's imports).
LANGUAGES = ("ar", "de", "en", "es", "fr", "hi", "it", "ja", "ko", "nl", "pt", "ru", "zh")
_METHOD_LABELS = {
    "auto": "Automatic",
    "xtest": "X11 keystrokes (XTEST)",
    "wtype": "Wayland: wtype",
    "dotool": "Wayland: dotool",
    "ydotool": "Wayland: ydotool (ASCII only)",
    "quartz": "macOS keystrokes",
    "sendinput": "Windows keystrokes",
    "clipboard": "Paste through the clipboard",
    "none": "Don't type (show only)",
}


class SettingsDialog(QDialog):
    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self._base = settings
        self.hotkey = QLineEdit(settings.hotkey)
        self.hotkey.setPlaceholderText("ctrl+alt+space, F9, pause …")
        self.mode = QComboBox()
        for m in PTT_MODES:
            self.mode.addItem("Hold to talk" if m == "hold" else "Press to start, press to stop", m)
        self.mode.setCurrentIndex(PTT_MODES.index(settings.ptt_mode))
        self.method = QComboBox()
        for m in METHODS:
            self.method.addItem(_METHOD_LABELS[m], m)
        self.method.setCurrentIndex(METHODS.index(settings.typing_method))
        self.delay = QSpinBox()
        self.delay.setRange(MIN_DELAY_MS, MAX_DELAY_MS)
        self.delay.setSingleStep(TOKEN_MS)
        self.delay.setSuffix(" ms")
        self.delay.setValue(settings.delay_ms)
        self.device = QComboBox()
        for d in DEVICES:
            self.device.addItem(d, d)
        self.device.setCurrentIndex(DEVICES.index(settings.compute_device))
        self.language = QComboBox()
        self.language.addItem("Detect automatically", "")
        for code in LANGUAGES:
            self.language.addItem(code, code)
        self.language.setCurrentIndex(max(0, self.language.findData(settings.language)))
        self.start_at_login = QCheckBox("Start at login")
        self.start_at_login.setChecked(settings.start_at_login)
        self.start_minimised = QCheckBox("Start minimised to the tray")
        self.start_minimised.setChecked(settings.start_minimised)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #b00020")

        form = QFormLayout()
        form.addRow("Push-to-talk key:", self.hotkey)
        form.addRow("Mode:", self.mode)
        form.addRow("Type text with:", self.method)
        form.addRow("Delay (accuracy vs. lag):", self.delay)
        form.addRow("Compute device:", self.device)
        form.addRow("Language:", self.language)
        form.addRow(self.start_at_login)
        form.addRow(self.start_minimised)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(buttons)

    def edited(self) -> AppSettings:
        """The settings as edited; raises `ConfigError` when a value is unusable."""
        delay = self.delay.value() // TOKEN_MS * TOKEN_MS
        return dataclasses.replace(
            self._base,
            hotkey=self.hotkey.text().strip(),
            ptt_mode=str(self.mode.currentData()),
            typing_method=str(self.method.currentData()),
            delay_ms=delay,
            compute_device=str(self.device.currentData()),
            language=str(self.language.currentData()),
            start_at_login=self.start_at_login.isChecked(),
            start_minimised=self.start_minimised.isChecked(),
        ).validated()

    def accept(self) -> None:
        try:
            self.edited()
        except ConfigError as exc:
            self.error.setText(str(exc))
            return
        super().accept()
