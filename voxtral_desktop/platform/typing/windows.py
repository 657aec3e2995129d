"""Typing on Windows with SendInput and KEYEVENTF_UNICODE (ctypes).

Every UTF-16 code unit is sent as a Unicode key (surrogate pairs as two units, which Windows
recombines), so the keyboard layout does not matter; line breaks are the Return key. Modifiers
the user still holds (the push-to-talk combo) are released first so they don't mangle the text.
SendInput returns fewer events than sent when the target is an elevated (administrator) window
that User Interface Privilege Isolation protects; that becomes an `InjectionError` instead of
text silently vanishing. The focused window is `GetForegroundWindow`, and typing stops when it
changes from the window the utterance began in.

NOT TESTED: CI has no Windows. The INPUT records are built by a pure helper that is unit-tested
on Linux (ctypes structures are portable); the calls into user32 are not.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from ctypes import wintypes
from typing import Any

from voxtral_desktop.platform.base import InjectionError, TargetWindowGone, WindowInfo

log = logging.getLogger(__name__)

INPUT_KEYBOARD = 1
KEYEVENTF_KEYUP = 0x0002
KEYEVENTF_UNICODE = 0x0004
VK_RETURN = 0x0D
VK_MODIFIERS = (0x10, 0x11, 0x12, 0x5B, 0x5C)  # Shift, Control, Alt (Menu), left/right Win
# Fixed-width types (not ctypes.wintypes, whose DWORD is 8 bytes on 64-bit Linux) keep the
# layout Windows expects on every OS, so the records can be unit-tested on CI.
WORD, DWORD, LONG = ctypes.c_uint16, ctypes.c_uint32, ctypes.c_int32
ULONG_PTR = ctypes.c_size_t


class KEYBDINPUT(ctypes.Structure):
    _fields_ = [
        ("wVk", WORD),
        ("wScan", WORD),
        ("dwFlags", DWORD),
        ("time", DWORD),
        ("dwExtraInfo", ULONG_PTR),
    ]


class MOUSEINPUT(ctypes.Structure):  # only here so the union has the size Windows expects
    _fields_ = [
        ("dx", LONG),
        ("dy", LONG),
        ("mouseData", DWORD),
        ("dwFlags", DWORD),
        ("time", DWORD),
        ("dwExtraInfo", ULONG_PTR),
    ]


class _INPUTUNION(ctypes.Union):
    _fields_ = [("ki", KEYBDINPUT), ("mi", MOUSEINPUT)]


class INPUT(ctypes.Structure):
    _fields_ = [("type", DWORD), ("u", _INPUTUNION)]


def build_inputs(text: str) -> list[INPUT]:
    """Key-down/key-up INPUT records that type `text`."""
    records: list[INPUT] = []
    for ch in text.replace("\r\n", "\n"):
        if ch == "\n":
            keys = [(VK_RETURN, 0, 0)]
        else:
            data = ch.encode("utf-16-le")
            keys = [
                (0, int.from_bytes(data[i : i + 2], "little"), KEYEVENTF_UNICODE)
                for i in range(0, len(data), 2)
            ]
        for vk, scan, flags in keys:
            for up in (0, KEYEVENTF_KEYUP):
                rec = INPUT(type=INPUT_KEYBOARD)
                rec.u.ki = KEYBDINPUT(wVk=vk, wScan=scan, dwFlags=flags | up, time=0, dwExtraInfo=0)
                records.append(rec)
    return records


class SendInputInjector:
    name = "sendinput"

    def __init__(self) -> None:
        if not sys.platform.startswith("win"):
            raise InjectionError("SendInput typing is only available on Windows")
        self._user32: Any = getattr(ctypes, "WinDLL")("user32", use_last_error=True)  # noqa: B009 (Windows only)
        self._user32.SendInput.argtypes = [wintypes.UINT, ctypes.POINTER(INPUT), ctypes.c_int]
        self._user32.SendInput.restype = wintypes.UINT
        self._user32.GetForegroundWindow.restype = wintypes.HWND
        self._user32.GetAsyncKeyState.restype = ctypes.c_short

    def focused_window(self) -> WindowInfo | None:
        hwnd = self._user32.GetForegroundWindow()
        if not hwnd:
            return None
        buf = ctypes.create_unicode_buffer(512)
        self._user32.GetWindowTextW(hwnd, buf, 512)
        return WindowInfo(title=buf.value, app="", window_id=int(hwnd))

    def type_text(self, text: str, target: WindowInfo | None = None) -> None:
        if target is not None and target.window_id is not None:
            now = self.focused_window()
            if now is None or now.window_id != target.window_id:
                where = now.describe() if now else "no window"
                raise TargetWindowGone(f"focus moved from {target.describe()} to {where}; stopped typing")
        held = [vk for vk in VK_MODIFIERS if self._user32.GetAsyncKeyState(vk) & 0x8000]
        release = []
        for vk in held:
            rec = INPUT(type=INPUT_KEYBOARD)
            rec.u.ki = KEYBDINPUT(wVk=vk, wScan=0, dwFlags=KEYEVENTF_KEYUP, time=0, dwExtraInfo=0)
            release.append(rec)
        records = release + build_inputs(text)
        if not records:
            return
        array = (INPUT * len(records))(*records)
        sent = self._user32.SendInput(len(records), array, ctypes.sizeof(INPUT))
        if sent != len(records):
            raise InjectionError(
                "Windows blocked the typed keys (the target window may run as administrator)"
            )

    def close(self) -> None:
        return None
