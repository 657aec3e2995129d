"""Typing on Wayland through the command-line tools the desktop may have.

Wayland gives ordinary clients no way to inject keys into other windows. What works depends on
the compositor:
- `wtype` (virtual-keyboard protocol: wlroots compositors such as Sway and Hyprland; not GNOME
  or KDE). It builds its own keymap, so any Unicode character comes out right. It has no daemon
  mode: one short process per delivered chunk (the app sends whole token groups, not letters).
- `dotool` (uinput: every compositor; needs the user in the `input` group). One long-lived
  process reads `type ...` commands from its stdin. It honours `DOTOOL_XKB_LAYOUT`.
- `ydotool` (uinput through the `ydotoold` daemon). It only types US-layout ASCII correctly, so
  it is last and refuses other characters instead of typing wrong ones.
None of these can tell which window has focus, so `focused_window()` is None and a window
closing mid-utterance cannot be detected. NOT TESTED on a real Wayland session (CI has none);
`tests/platform/test_typing_other.py` checks the commands built with fake tool binaries.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading

from voxtral_desktop.platform.base import InjectionError, WindowInfo

log = logging.getLogger(__name__)

TOOL_TIMEOUT_S = 5.0


class WtypeInjector:
    name = "wtype"

    def __init__(self, exe: str | None = None) -> None:
        found = exe or shutil.which("wtype")
        if not found:
            raise InjectionError("wtype is not installed")
        self._exe: str = found

    def focused_window(self) -> WindowInfo | None:
        return None

    def type_text(self, text: str, target: WindowInfo | None = None) -> None:
        if not text:
            return
        try:
            proc = subprocess.run(
                [self._exe, "--", text], capture_output=True, text=True, timeout=TOOL_TIMEOUT_S
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InjectionError(f"wtype failed: {exc}") from None
        if proc.returncode != 0:
            reason = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise InjectionError(
                f"wtype could not type ({reason}); this compositor may lack the virtual-keyboard protocol"
            )

    def close(self) -> None:
        return None


class DotoolInjector:
    """One `dotool` process for the whole session, fed commands on stdin."""

    name = "dotool"

    def __init__(self, exe: str | None = None) -> None:
        exe = exe or shutil.which("dotool")
        if not exe:
            raise InjectionError("dotool is not installed")
        try:
            self._proc = subprocess.Popen(
                [exe], stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8"
            )
        except OSError as exc:
            raise InjectionError(f"cannot start dotool: {exc}") from None
        self._lock = threading.Lock()

    def focused_window(self) -> WindowInfo | None:
        return None

    def type_text(self, text: str, target: WindowInfo | None = None) -> None:
        with self._lock:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read() if self._proc.stderr else ""
                raise InjectionError(f"dotool exited ({err.strip() or 'is your user in the input group?'})")
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write(dotool_commands(text))
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                raise InjectionError(f"dotool stopped accepting text: {exc}") from None

    def close(self) -> None:
        with self._lock:
            if self._proc.poll() is None:
                assert self._proc.stdin is not None
                self._proc.stdin.close()
                try:
                    self._proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    self._proc.kill()


def dotool_commands(text: str) -> str:
    """dotool's `type` takes the rest of its line, so line breaks become `key enter`."""
    out: list[str] = []
    for i, line in enumerate(text.replace("\r\n", "\n").split("\n")):
        if i:
            out.append("key enter\n")
        if line:
            out.append(f"type {line}\n")
    return "".join(out)


class YdotoolInjector:
    name = "ydotool"

    def __init__(self, exe: str | None = None) -> None:
        found = exe or shutil.which("ydotool")
        if not found:
            raise InjectionError("ydotool is not installed")
        self._exe: str = found

    def focused_window(self) -> WindowInfo | None:
        return None

    def type_text(self, text: str, target: WindowInfo | None = None) -> None:
        if not text.isascii():
            raise InjectionError(
                "ydotool types only US-keyboard ASCII; install wtype or dotool for other characters"
            )
        try:
            proc = subprocess.run(
                [self._exe, "type", "--", text], capture_output=True, text=True, timeout=TOOL_TIMEOUT_S
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InjectionError(f"ydotool failed: {exc}") from None
        if proc.returncode != 0:
            raise InjectionError(
                f"ydotool could not type (is ydotoold running?): {proc.stderr.strip()[-200:]}"
            )

    def close(self) -> None:
        return None
