"""Small python-xlib helpers shared by the X11 hotkey listener and the XTEST injector.

python-xlib has no binding for the XKEYBOARD extension, so the two requests we need
(XkbUseExtension and XkbPerClientFlags, i.e. what libX11's `XkbSetDetectableAutoRepeat` sends)
are declared here with its request-building module. Layouts follow the XKB protocol spec.
"""

from __future__ import annotations

import logging
from typing import Any

from Xlib import X, display, error
from Xlib.protocol import rq

log = logging.getLogger(__name__)

XKB_USE_CORE_KBD = 0x0100
XKB_PCF_DETECTABLE_AUTO_REPEAT = 1 << 0


class _XkbUseExtension(rq.ReplyRequest):  # type: ignore[misc]
    _request = rq.Struct(
        rq.Card8("opcode"),
        rq.Opcode(0),
        rq.RequestLength(),
        rq.Card16("wanted_major"),
        rq.Card16("wanted_minor"),
    )
    _reply = rq.Struct(
        rq.ReplyCode(),
        rq.Bool("supported"),
        rq.Card16("sequence_number"),
        rq.ReplyLength(),
        rq.Card16("server_major"),
        rq.Card16("server_minor"),
        rq.Pad(20),
    )


class _XkbPerClientFlags(rq.ReplyRequest):  # type: ignore[misc]
    _request = rq.Struct(
        rq.Card8("opcode"),
        rq.Opcode(21),
        rq.RequestLength(),
        rq.Card16("device_spec"),
        rq.Pad(2),
        rq.Card32("change"),
        rq.Card32("value"),
        rq.Card32("ctrls_to_change"),
        rq.Card32("auto_ctrls"),
        rq.Card32("auto_ctrl_values"),
    )
    _reply = rq.Struct(
        rq.ReplyCode(),
        rq.Card8("device_id"),
        rq.Card16("sequence_number"),
        rq.ReplyLength(),
        rq.Card32("supported"),
        rq.Card32("value"),
        rq.Card32("auto_ctrls"),
        rq.Card32("auto_ctrl_values"),
        rq.Pad(8),
    )


def set_detectable_auto_repeat(d: display.Display) -> bool:
    """XkbSetDetectableAutoRepeat(True) for this connection: a held key then sends repeated
    KeyPress events but no fake KeyRelease between them. Returns whether the server agreed."""
    ext = d.query_extension("XKEYBOARD")
    if not ext.present:
        log.warning("the X server has no XKEYBOARD extension; auto-repeat is filtered by timestamps only")
        return False
    opcode = ext.major_opcode
    use = _XkbUseExtension(display=d.display, opcode=opcode, wanted_major=1, wanted_minor=0)
    if not use.supported:
        return False
    flags = _XkbPerClientFlags(
        display=d.display,
        opcode=opcode,
        device_spec=XKB_USE_CORE_KBD,
        change=XKB_PCF_DETECTABLE_AUTO_REPEAT,
        value=XKB_PCF_DETECTABLE_AUTO_REPEAT,
        ctrls_to_change=0,
        auto_ctrls=0,
        auto_ctrl_values=0,
    )
    return bool(flags.value & XKB_PCF_DETECTABLE_AUTO_REPEAT)


def open_display(name: str | None) -> display.Display:
    """Open an X connection or raise OSError with a readable reason."""
    try:
        return display.Display(name)
    except (error.DisplayError, error.ConnectionClosedError, OSError) as exc:
        raise OSError(f"cannot open the X display {name or '$DISPLAY'}: {exc}") from None


def key_is_down(keymap: Any, keycode: int) -> bool:
    """Whether `keycode` is pressed in a `query_keymap()` bit vector (32 bytes)."""
    return bool((keymap[keycode // 8] >> (keycode % 8)) & 1)


def modifier_keycodes(d: display.Display) -> set[int]:
    """Keycodes bound to Shift, Control, Mod1..Mod5 (not Lock: Caps Lock is a latch)."""
    codes: set[int] = set()
    for index, row in enumerate(d.get_modifier_mapping()):
        if index == X.LockMapIndex:
            continue
        codes.update(kc for kc in row if kc)
    return codes


def window_info(d: display.Display, window_id: int) -> tuple[str, str]:
    """(title, app) of a window or its nearest ancestor that has them; ('', '') when unknown."""
    net_name = d.intern_atom("_NET_WM_NAME")
    utf8 = d.intern_atom("UTF8_STRING")
    win = d.create_resource_object("window", window_id)
    for _ in range(8):  # focus may be on a child; the title lives on the top-level window
        try:
            prop = win.get_full_property(net_name, utf8)
            title = prop.value.decode("utf-8", "replace") if prop else (win.get_wm_name() or "")
            if isinstance(title, bytes):
                title = title.decode("latin-1")
            cls = win.get_wm_class()
            app = cls[1] if cls else ""
            if title or app:
                return str(title), str(app)
            tree = win.query_tree()
        except (error.BadWindow, error.BadDrawable, error.BadMatch):
            return "", ""
        if not tree.parent or tree.parent.id == tree.root.id:
            break
        win = tree.parent
    return "", ""


def window_exists(d: display.Display, window_id: int) -> bool:
    try:
        d.create_resource_object("window", window_id).get_geometry()
    except (error.BadWindow, error.BadDrawable):
        return False
    return True
