"""Typing text into the focused window, per platform, behind the `TextInjector` Protocol.

| session | backend                    | tested here                      |
|---------|----------------------------|----------------------------------|
| X11     | `x11.XTestInjector`        | yes, under Xvfb, Unicode exact   |
| Wayland | `wayland.WtypeInjector`, `DotoolInjector`, `YdotoolInjector` | command building only |
| macOS   | `macos.QuartzInjector`     | no (chunking helper only)        |
| Windows | `windows.SendInputInjector`| no (INPUT building only)         |

The clipboard-paste method needs the GUI toolkit's clipboard, so it lives in
`voxtral_desktop.ui.clipboard` and uses `XTestInjector.send_paste_chord` on X11.
"""

from __future__ import annotations

import logging

from voxtral_desktop.platform.base import InjectionError, TextInjector, WindowInfo, session_kind

log = logging.getLogger(__name__)

METHODS = ("auto", "xtest", "wtype", "dotool", "ydotool", "quartz", "sendinput", "clipboard", "none")


class NullInjector:
    """Types nothing: text only appears in the app (the "show only" typing method)."""

    name = "none"

    def focused_window(self) -> WindowInfo | None:
        return None

    def type_text(self, text: str, target: WindowInfo | None = None) -> None:
        return None

    def close(self) -> None:
        return None


def create_injector(method: str = "auto", display_name: str | None = None) -> TextInjector:
    """The injector for `method`; "auto" picks by session. Raises `InjectionError` saying why."""
    if method not in METHODS or method == "clipboard":
        raise InjectionError(f"unknown typing method {method!r} here; choose one of {', '.join(METHODS)}")
    if method == "none":
        return NullInjector()
    if method == "auto":
        kind = "x11" if display_name else session_kind()
        candidates = {
            "x11": ["xtest"],
            "wayland": ["wtype", "dotool", "ydotool"],
            "macos": ["quartz"],
            "windows": ["sendinput"],
        }.get(kind, [])
        if not candidates:
            raise InjectionError("no display: typing into other windows needs a desktop session")
        problems = []
        for name in candidates:
            try:
                return create_injector(name, display_name)
            except InjectionError as exc:
                problems.append(str(exc))
        raise InjectionError("cannot type into other windows: " + "; ".join(problems))
    if method == "xtest":
        from voxtral_desktop.platform.typing.x11 import XTestInjector

        return XTestInjector(display_name)
    if method in ("wtype", "dotool", "ydotool"):
        from voxtral_desktop.platform.typing import wayland

        if method == "wtype":
            return wayland.WtypeInjector()
        if method == "dotool":
            return wayland.DotoolInjector()
        return wayland.YdotoolInjector()
    if method == "quartz":
        from voxtral_desktop.platform.typing.macos import QuartzInjector

        return QuartzInjector()
    from voxtral_desktop.platform.typing.windows import SendInputInjector

    return SendInputInjector()


__all__ = ["METHODS", "NullInjector", "create_injector"]
