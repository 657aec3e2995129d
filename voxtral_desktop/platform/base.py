"""The Protocols every platform backend implements, their value types and their errors."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from voxtral_desktop.errors import VoxtralError


class PlatformError(VoxtralError):
    """Something the operating system refused; `str(err)` is one line for the user."""


class HotkeyError(PlatformError):
    """The global push-to-talk key cannot be used (taken by another app, unsupported session)."""


class InjectionError(PlatformError):
    """Text could not be delivered to the focused window."""


class TargetWindowGone(InjectionError):
    """The window being typed into closed, or focus moved away from it, part-way through.

    `delivered` counts the characters of the failed `type_text` call that were typed first.
    """

    def __init__(self, message: str, delivered: int = 0) -> None:
        super().__init__(message)
        self.delivered = delivered


class AudioDeviceError(PlatformError):
    """No input device, the chosen one is missing, or it disappeared while recording."""


@dataclass(frozen=True)
class WindowInfo:
    """The window that had keyboard focus, as far as the OS tells us."""

    title: str = ""
    app: str = ""  # the application's class/name (WM_CLASS, bundle id, exe name)
    window_id: int | None = None

    def describe(self) -> str:
        if self.app and self.title:
            return f"{self.title} ({self.app})"
        return self.title or self.app or "an unnamed window"


_MODIFIER_ALIASES = {
    "ctrl": "ctrl",
    "control": "ctrl",
    "alt": "alt",
    "shift": "shift",
    "super": "super",
    "meta": "super",
    "win": "super",
    "cmd": "super",
}
_MODIFIER_ORDER = ("ctrl", "alt", "shift", "super")


@dataclass(frozen=True)
class HotkeySpec:
    """A key plus modifiers, written like "ctrl+alt+space" or "F9"."""

    key: str
    modifiers: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str) -> HotkeySpec:
        parts = [p.strip() for p in text.split("+")]
        if not text.strip() or any(not p for p in parts):
            raise HotkeyError(f"cannot read the hotkey {text!r}: write it like ctrl+alt+space or F9")
        *mods, key = parts
        unknown = [m for m in mods if m.lower() not in _MODIFIER_ALIASES]
        if unknown:
            raise HotkeyError(
                f"unknown modifier {unknown[0]!r} in hotkey {text!r}: use ctrl, alt, shift or super"
            )
        if key.lower() in _MODIFIER_ALIASES:
            raise HotkeyError(f"the hotkey {text!r} has no key besides modifiers")
        return cls(
            key=key if len(key) > 1 else key.lower(),
            modifiers=frozenset(_MODIFIER_ALIASES[m.lower()] for m in mods),
        )

    def __str__(self) -> str:
        mods = [m for m in _MODIFIER_ORDER if m in self.modifiers]
        return "+".join([*mods, self.key])

    def label(self) -> str:
        """For the UI: "Ctrl+Alt+Space"."""
        return "+".join(
            [m.capitalize() for m in _MODIFIER_ORDER if m in self.modifiers] + [self.key.capitalize()]
        )


class HotkeyListener(Protocol):
    """A global key that works while another application has focus.

    `on_press` and `on_release` are called from the listener's own thread, once per physical
    press and release: keyboard auto-repeat never produces extra calls.
    """

    spec: HotkeySpec

    def start(self, on_press: Callable[[], None], on_release: Callable[[], None]) -> None: ...

    def stop(self) -> None: ...


class TextInjector(Protocol):
    """Types text into the window that has keyboard focus. One long-lived object per app."""

    name: str

    def focused_window(self) -> WindowInfo | None: ...

    def type_text(self, text: str, target: WindowInfo | None = None) -> None:
        """Deliver `text`; raises `InjectionError` (or `TargetWindowGone` when `target` is given
        and focus is no longer on it) without typing the rest."""

    def close(self) -> None: ...


def session_kind() -> str:
    """ "x11", "wayland", "macos", "windows" or "none" (no display at all)."""
    if sys.platform == "darwin":
        return "macos"
    if sys.platform.startswith("win"):
        return "windows"
    if os.environ.get("WAYLAND_DISPLAY") or os.environ.get("XDG_SESSION_TYPE") == "wayland":
        return "wayland"
    if os.environ.get("DISPLAY"):
        return "x11"
    return "none"
