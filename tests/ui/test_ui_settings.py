from __future__ import annotations

from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from voxtral_desktop.errors import ConfigError
from voxtral_desktop.ui.settings import (
    AppSettings,
    Key,
    load_settings,
    open_qsettings,
    save_settings,
    settings_path,
)
from voxtral_desktop.ui.settings_dialog import SettingsDialog


def test_defaults_roundtrip_and_location(tmp_path: Path, qapp: object) -> None:
    assert settings_path() == tmp_path / "config" / "voxtral-desktop" / "voxtral-desktop.ini"
    store = open_qsettings()
    assert load_settings(store) == AppSettings()
    changed = AppSettings(
        model_path="/m/é.gguf",
        delay_ms=960,
        hotkey="F9",
        ptt_mode="toggle",
        typing_method="clipboard",
        input_device="USB mic",
        start_at_login=True,
        start_minimised=True,
        language="fr",
    )
    save_settings(store, changed)
    assert load_settings(open_qsettings()) == changed
    assert settings_path().read_text(encoding="utf-8").count("=") >= len(Key)


def test_bad_values_fall_back_one_by_one(tmp_path: Path, qapp: object) -> None:
    store = open_qsettings()
    store.setValue(Key.DELAY_MS.value, "100")  # not a multiple of 80
    store.setValue(Key.HOTKEY.value, "hyper+q")
    store.setValue(Key.MODEL_PATH.value, "/models/voxtral.gguf")
    store.setValue(Key.START_MINIMISED.value, "true")
    store.sync()
    s = load_settings(open_qsettings())
    assert s.delay_ms == AppSettings().delay_ms and s.hotkey == AppSettings().hotkey
    assert s.model_path == "/models/voxtral.gguf" and s.start_minimised is True


def test_validation() -> None:
    with pytest.raises(ConfigError, match="multiple of 80"):
        AppSettings(delay_ms=500).validated()
    with pytest.raises(ConfigError, match="typing method"):
        AppSettings(typing_method="morse").validated()
    with pytest.raises(ConfigError, match="modifier"):
        AppSettings(hotkey="hyper+a").validated()


def test_settings_dialog_edits_a_value(qtbot: QtBot) -> None:
    dialog = SettingsDialog(AppSettings())
    qtbot.addWidget(dialog)
    dialog.hotkey.setText("ctrl+shift+F12")
    dialog.mode.setCurrentIndex(1)
    dialog.delay.setValue(800)
    edited = dialog.edited()
    assert (edited.hotkey, edited.ptt_mode, edited.delay_ms) == ("ctrl+shift+F12", "toggle", 800)
    dialog.hotkey.setText("ctrl+")
    dialog.accept()
    assert "write it like" in dialog.error.text() and dialog.result() != SettingsDialog.DialogCode.Accepted


def test_tray_menu_follows_the_recording_state(qtbot: QtBot) -> None:
    from voxtral_desktop.ui.tray import Tray

    tray = Tray()
    assert tray.toggle_action.text() == "Start dictation"
    with qtbot.waitSignal(tray.toggle_requested):
        tray.toggle_action.trigger()
    tray.set_recording(True)
    assert tray.toggle_action.text() == "Stop dictation"
    assert not tray.icon.icon().isNull()
