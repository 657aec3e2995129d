"""Typing on macOS with Quartz keyboard events (ctypes; no PyObjC needed).

Each event carries up to 20 UTF-16 code units set with `CGEventKeyboardSetUnicodeString`, so
any character is typed whatever the keyboard layout. Events come from a private event source
and have their modifier flags cleared, so a push-to-talk modifier the user still holds does not
turn "h" into Cmd+H. Posting needs the Accessibility permission; without it macOS drops the
events silently, so the injector checks `AXIsProcessTrusted()` first and says what to do.

NOT TESTED: CI has no Mac. Only the pure chunking helper is unit-tested on Linux.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from typing import Any

from voxtral_desktop.platform.base import InjectionError, WindowInfo

log = logging.getLogger(__name__)

MAX_UNITS_PER_EVENT = 20  # CGEventKeyboardSetUnicodeString ignores more
KEYCODE_RETURN = 36
KCG_HID_EVENT_TAP = 0
KCG_EVENT_SOURCE_STATE_PRIVATE = -1


def utf16_chunks(text: str, max_units: int = MAX_UNITS_PER_EVENT) -> list[str]:
    """Split text into runs of at most `max_units` UTF-16 units without splitting a surrogate
    pair; line breaks are their own one-character runs (sent as the Return key)."""
    chunks: list[str] = []
    cur, units = "", 0
    for ch in text.replace("\r\n", "\n"):
        n = 2 if ord(ch) > 0xFFFF else 1
        if ch == "\n" or units + n > max_units:
            if cur:
                chunks.append(cur)
            cur, units = "", 0
            if ch == "\n":
                chunks.append("\n")
                continue
        cur += ch
        units += n
    if cur:
        chunks.append(cur)
    return chunks


class QuartzInjector:
    name = "quartz"

    def __init__(self) -> None:
        if sys.platform != "darwin":
            raise InjectionError("Quartz typing is only available on macOS")
        path = ctypes.util.find_library("ApplicationServices")
        if not path:
            raise InjectionError("cannot load ApplicationServices")
        cg = ctypes.cdll.LoadLibrary(path)
        cg.CGEventSourceCreate.restype = ctypes.c_void_p
        cg.CGEventSourceCreate.argtypes = [ctypes.c_int32]
        cg.CGEventCreateKeyboardEvent.restype = ctypes.c_void_p
        cg.CGEventCreateKeyboardEvent.argtypes = [ctypes.c_void_p, ctypes.c_uint16, ctypes.c_bool]
        cg.CGEventKeyboardSetUnicodeString.argtypes = [
            ctypes.c_void_p,
            ctypes.c_ulong,
            ctypes.POINTER(ctypes.c_uint16),
        ]
        cg.CGEventSetFlags.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
        cg.CGEventPost.argtypes = [ctypes.c_uint32, ctypes.c_void_p]
        cg.CFRelease.argtypes = [ctypes.c_void_p]
        cg.AXIsProcessTrusted.restype = ctypes.c_bool
        self._cg: Any = cg
        self._source: int | None = cg.CGEventSourceCreate(KCG_EVENT_SOURCE_STATE_PRIVATE)

    def focused_window(self) -> WindowInfo | None:
        return None  # needs NSWorkspace (PyObjC); the history then shows no app name

    def type_text(self, text: str, target: WindowInfo | None = None) -> None:
        cg = self._cg
        if not cg.AXIsProcessTrusted():
            raise InjectionError(
                "macOS blocks typing into other apps: allow Voxtral Desktop in System Settings > "
                "Privacy & Security > Accessibility, then try again"
            )
        for chunk in utf16_chunks(text):
            if chunk == "\n":
                self._post(KEYCODE_RETURN, None)
                continue
            units = chunk.encode("utf-16-le")
            arr = (ctypes.c_uint16 * (len(units) // 2)).from_buffer_copy(units)
            self._post(0, arr)

    def _post(self, keycode: int, units: ctypes.Array[ctypes.c_uint16] | None) -> None:
        cg = self._cg
        for down in (True, False):
            ev = cg.CGEventCreateKeyboardEvent(self._source, keycode, down)
            if not ev:
                raise InjectionError("macOS refused to create a keyboard event")
            cg.CGEventSetFlags(ev, 0)  # no held Cmd/Ctrl/Option/Shift on our keys
            if units is not None:
                cg.CGEventKeyboardSetUnicodeString(ev, len(units), units)
            cg.CGEventPost(KCG_HID_EVENT_TAP, ev)
            cg.CFRelease(ev)

    def close(self) -> None:
        if self._source:
            self._cg.CFRelease(self._source)
            self._source = None
