"""Start at login: an XDG autostart entry (Linux), a LaunchAgent (macOS), a Run key (Windows).

Only the Linux entry is tested (it is a file); the macOS and Windows variants are written to
their documented formats but NOT TESTED here.
"""

from __future__ import annotations

import logging
import os
import plistlib
import sys
from collections.abc import Sequence
from pathlib import Path

from voxtral_desktop.platform.base import PlatformError

log = logging.getLogger(__name__)

ENTRY_NAME = "voxtral-desktop"
LAUNCH_AGENT_ID = "org.voxtral-desktop.app"


def default_command() -> list[str]:
    return [sys.executable, "-m", "voxtral_desktop.ui", "--minimised"]


def desktop_exec(cmd: Sequence[str]) -> str:
    """An Exec= value as the Desktop Entry spec quotes it (double quotes, backslash escapes)."""
    out = []
    for arg in cmd:
        if arg and not any(c in arg for c in " \t\n\"'\\><~|&;$*?#()`="):
            out.append(arg)
        else:
            escaped = "".join("\\" + c if c in '"`$\\' else c for c in arg)
            out.append(f'"{escaped}"')
    return " ".join(out).replace("%", "%%")


def _xdg_entry_path() -> Path:
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "autostart" / f"{ENTRY_NAME}.desktop"


def set_start_at_login(enabled: bool, command: Sequence[str] | None = None) -> Path | None:
    """Create or remove the login entry; returns where it lives (None on Windows)."""
    cmd = list(command or default_command())
    try:
        if sys.platform == "darwin":
            path = Path.home() / "Library" / "LaunchAgents" / f"{LAUNCH_AGENT_ID}.plist"
            if enabled:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(
                    plistlib.dumps({"Label": LAUNCH_AGENT_ID, "ProgramArguments": cmd, "RunAtLoad": True})
                )
            else:
                path.unlink(missing_ok=True)
            return path
        if sys.platform.startswith("win"):
            import winreg  # type: ignore[import-not-found]

            key = winreg.OpenKey(
                winreg.HKEY_CURRENT_USER,
                r"Software\Microsoft\Windows\CurrentVersion\Run",
                0,
                winreg.KEY_SET_VALUE,
            )
            with key:
                if enabled:
                    winreg.SetValueEx(key, ENTRY_NAME, 0, winreg.REG_SZ, " ".join(f'"{c}"' for c in cmd))
                else:
                    try:
                        winreg.DeleteValue(key, ENTRY_NAME)
                    except FileNotFoundError:
                        pass
            return None
        path = _xdg_entry_path()
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                "[Desktop Entry]\nType=Application\nName=Voxtral Desktop\n"
                "Comment=Local push-to-talk dictation\n"
                f"Exec={desktop_exec(cmd)}\nIcon=audio-input-microphone\nTerminal=false\n"
                "X-GNOME-Autostart-enabled=true\n",
                encoding="utf-8",
            )
        else:
            path.unlink(missing_ok=True)
        return path
    except OSError as exc:
        raise PlatformError(f"cannot change start-at-login: {exc}") from None


def starts_at_login() -> bool:
    if sys.platform == "darwin":
        return (Path.home() / "Library" / "LaunchAgents" / f"{LAUNCH_AGENT_ID}.plist").exists()
    if sys.platform.startswith("win"):
        return False  # not read back on Windows; the setting is the source of truth
    return _xdg_entry_path().exists()
