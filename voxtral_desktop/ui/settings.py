"""Every user setting: keys as an Enum, values as one frozen dataclass.

This is the only module that reads or writes QSettings. The app reads an `AppSettings` once at
start (and again after the settings dialog) and passes plain values down; nothing below the UI
ever sees QSettings. The file is an INI file in the platformdirs/XDG config directory
(`~/.config/voxtral-desktop/voxtral-desktop.ini` on Linux).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import platformdirs
from PySide6.QtCore import QSettings

from voxtral_desktop.config import DEFAULT_DELAY_MS, check_delay_ms
from voxtral_desktop.errors import ConfigError
from voxtral_desktop.platform.base import HotkeySpec, PlatformError
from voxtral_desktop.platform.typing import METHODS

log = logging.getLogger(__name__)

APP_NAME = "voxtral-desktop"
# Ctrl+Alt+Space: few apps or desktops bind it, and it is easy to hold with one hand.
DEFAULT_HOTKEY = "ctrl+alt+space"
PTT_MODES = ("hold", "toggle")
DEVICES = ("auto", "cpu", "cuda", "mps")
# as in kernels/select.py (no torch import here)
KERNELS = ("auto", "reference", "int4", "triton", "mma", "dense")


class Key(str, Enum):
    MODEL_PATH = "model/path"
    COMPUTE_DEVICE = "model/device"
    KERNEL = "model/kernel"
    DELAY_MS = "model/delay_ms"
    LANGUAGE = "model/language"
    INPUT_DEVICE = "audio/input_device"
    HOTKEY = "dictation/hotkey"
    PTT_MODE = "dictation/mode"
    TYPING_METHOD = "dictation/typing_method"
    START_AT_LOGIN = "app/start_at_login"
    START_MINIMISED = "app/start_minimised"


@dataclass(frozen=True)
class AppSettings:
    model_path: str = ""
    compute_device: str = "auto"
    kernel: str = "auto"  # Q4 matmul; "reference" is exact (file == stream bit for bit), slower
    delay_ms: int = DEFAULT_DELAY_MS
    language: str = ""  # "" = the model detects it
    input_device: str = ""  # "" = the system default input
    hotkey: str = DEFAULT_HOTKEY
    ptt_mode: str = "hold"
    typing_method: str = "auto"
    start_at_login: bool = False
    start_minimised: bool = False

    def validated(self) -> AppSettings:
        """Raise `ConfigError` on a value no part of the app could use."""
        check_delay_ms(self.delay_ms)
        if self.ptt_mode not in PTT_MODES:
            raise ConfigError(
                f"push-to-talk mode must be one of {', '.join(PTT_MODES)}, not {self.ptt_mode!r}"
            )
        if self.typing_method not in METHODS:
            raise ConfigError(
                f"typing method must be one of {', '.join(METHODS)}, not {self.typing_method!r}"
            )
        if self.kernel not in KERNELS:
            raise ConfigError(f"kernel must be one of {', '.join(KERNELS)}, not {self.kernel!r}")
        if self.compute_device not in DEVICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICES)}, not {self.compute_device!r}")
        try:
            HotkeySpec.parse(self.hotkey)
        except PlatformError as exc:
            raise ConfigError(str(exc)) from None
        return self


_FIELDS = {
    Key.MODEL_PATH: "model_path",
    Key.COMPUTE_DEVICE: "compute_device",
    Key.KERNEL: "kernel",
    Key.DELAY_MS: "delay_ms",
    Key.LANGUAGE: "language",
    Key.INPUT_DEVICE: "input_device",
    Key.HOTKEY: "hotkey",
    Key.PTT_MODE: "ptt_mode",
    Key.TYPING_METHOD: "typing_method",
    Key.START_AT_LOGIN: "start_at_login",
    Key.START_MINIMISED: "start_minimised",
}


def settings_path() -> Path:
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / f"{APP_NAME}.ini"


def open_qsettings(path: Path | None = None) -> QSettings:
    return QSettings(str(path or settings_path()), QSettings.Format.IniFormat)


def load_settings(store: QSettings) -> AppSettings:
    """Read every key; a missing or unreadable value falls back to its default (and is logged)."""
    defaults = AppSettings()
    values: dict[str, object] = {}
    for key, name in _FIELDS.items():
        default = getattr(defaults, name)
        raw = store.value(key.value, default)
        try:
            if isinstance(default, bool):
                value: object = raw if isinstance(raw, bool) else str(raw).lower() in ("1", "true", "yes")
            elif isinstance(default, int):
                value = int(raw)  # type: ignore[call-overload]
            else:
                value = "" if raw is None else str(raw)
        except (TypeError, ValueError):
            log.warning("setting %s has an unreadable value %r; using %r", key.value, raw, default)
            value = default
        values[name] = value
    settings = AppSettings(**values)  # type: ignore[arg-type]
    try:
        return settings.validated()
    except ConfigError as exc:
        log.warning("settings file has a bad value (%s); using defaults for the rest", exc)
        good = {}
        for name, value in values.items():
            try:
                dataclasses.replace(defaults, **{name: value}).validated()  # type: ignore[arg-type]
                good[name] = value
            except ConfigError:
                pass
        return AppSettings(**good)  # type: ignore[arg-type]


def save_settings(store: QSettings, settings: AppSettings) -> None:
    settings.validated()
    for key, name in _FIELDS.items():
        store.setValue(key.value, getattr(settings, name))
    store.sync()
