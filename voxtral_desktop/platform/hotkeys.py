"""Global push-to-talk keys.

X11 (`X11HotkeyListener`): the key is grabbed with XGrabKey on the root window (for every
Caps Lock / Num Lock combination, so the locks don't disable it). A grab another client already
holds fails with BadAccess, which becomes a `HotkeyError` naming the key.

Three X facts shape the design, each checked under Xvfb (tests/platform/test_platform_hotkeys.py,
tests/ui/test_ui_e2e_xvfb.py):
- While a passive key grab is active, *every* keyboard event goes to the grabbing client,
  including the XTEST keys we inject to type text. So on the press the keyboard grab is released
  at once (the key grab stays registered) and the typed text reaches the focused window.
- Each auto-repeat of the held key is a new KeyPress that re-activates the passive grab, which
  would swallow the text typed during a hold. Switching the key's repeat off *after* the press
  does not stop a repeat already running, so it must be off before the press: for a key without
  modifiers (F9, Pause) the key's auto-repeat is off while the listener runs; for a combo like
  Ctrl+Alt+Space it is switched off only while Ctrl and Alt are both held, tracked with XInput2
  raw key events (which see physical keys even while someone holds a grab), so Space still
  repeats in normal typing. The connection also asks for XKB detectable auto-repeat
  (`XkbSetDetectableAutoRepeat`), and if a repeat slips through anyway the grab is released again.
- After the grab is released the key's release goes to the focused window, so the release is
  found by reading the server's key map every 10 ms while the key is held: auto-repeat, fake
  releases and modifier order cannot end a recording early.

Other sessions: Wayland gives apps no global key grabs (bind a desktop shortcut to
`voxtral-desktop --toggle` instead); macOS and Windows listeners are not written yet. For those
`create_hotkey_listener` raises a `HotkeyError` that says so; the on-screen button still works.
"""

from __future__ import annotations

import logging
import select
import sys
import threading
from collections.abc import Callable

from Xlib import XK, X, error
from Xlib.display import Display
from Xlib.ext import xinput

from voxtral_desktop.platform import _x11
from voxtral_desktop.platform.base import HotkeyError, HotkeyListener, HotkeySpec, session_kind

log = logging.getLogger(__name__)

_MODIFIER_MASKS = {"ctrl": X.ControlMask, "alt": X.Mod1Mask, "shift": X.ShiftMask, "super": X.Mod4Mask}
POLL_HELD_S = 0.010  # how often the key map is read while the key is held
POLL_IDLE_S = 0.100  # how long the thread waits for X events before checking for stop()
_GENERIC_EVENT = 35
_XI_RAW_KEY_PRESS, _XI_RAW_KEY_RELEASE = 13, 14


def keysym_for(key: str) -> int:
    """The X keysym for a key name like "space", "F9", "Pause" or "a"; 0 if unknown."""
    for name in (key, key.lower(), key.capitalize(), key.upper()):
        ks = XK.string_to_keysym(name)
        if ks:
            return int(ks)
    return 0


def _is_text_key(keysym: int) -> bool:
    """Whether the key types a character (letters, digits, space, punctuation)."""
    return 0x20 <= keysym <= 0xFF or keysym >= 0x01000000


class _RepeatGuard:
    """Keeps the hotkey's auto-repeat off whenever pressing it would trigger the grab."""

    def __init__(self, d: Display, keycode: int, required_mask: int) -> None:
        self.d, self.keycode, self.required = d, keycode, required_mask
        self.was_on = _key_repeat_on(d, keycode)
        self.mod_of: dict[int, int] = {}  # keycode -> modifier bit
        for index, row in enumerate(d.get_modifier_mapping()):
            for kc in row:
                if kc:
                    self.mod_of[int(kc)] = 1 << index
        keymap = d.query_keymap()
        self.down = {kc for kc in self.mod_of if _x11.key_is_down(keymap, kc)}
        self.raw = required_mask == 0 or _select_raw_keys(d)
        self.off = False
        self.update()

    def on_raw(self, evtype: int, keycode: int) -> None:
        if keycode in self.mod_of:
            (self.down.add if evtype == _XI_RAW_KEY_PRESS else self.down.discard)(keycode)
            self.update()

    def update(self, held: bool = False) -> None:
        active = 0
        for kc in self.down:
            active |= self.mod_of[kc]
        want_off = (active & self.required) == self.required or held or not self.raw
        if want_off != self.off and self.was_on:
            _set_key_repeat(self.d, self.keycode, on=not want_off)
        self.off = want_off

    def restore(self) -> None:
        if self.was_on and self.off:
            _set_key_repeat(self.d, self.keycode, on=True)
            self.off = False


class X11HotkeyListener:
    """XGrabKey-based global key; see the module docstring for the protocol details."""

    def __init__(self, spec: HotkeySpec, display_name: str | None = None) -> None:
        self.spec = spec
        self._display_name = display_name
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.detectable_auto_repeat = False

    def start(self, on_press: Callable[[], None], on_release: Callable[[], None]) -> None:
        if self._thread is not None:
            raise RuntimeError("listener already started")
        try:
            d = _x11.open_display(self._display_name)
        except OSError as exc:
            raise HotkeyError(f"global hotkeys unavailable: {exc}") from None
        try:
            keycode, variants, mods = self._grab(d)
            guard = _RepeatGuard(d, keycode, mods)
        except BaseException:
            d.close()
            raise
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run,
            args=(d, keycode, variants, guard, on_press, on_release),
            name="x11-hotkey",
            daemon=True,
        )
        self._thread.start()
        log.info("push-to-talk key %s grabbed (keycode %d)", self.spec, keycode)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    # ---- internals ------------------------------------------------------------------------
    def _grab(self, d: Display) -> tuple[int, list[int], int]:
        keysym = keysym_for(self.spec.key)
        keycode = d.keysym_to_keycode(keysym) if keysym else 0
        if not keycode:
            raise HotkeyError(
                f"the key {self.spec.key!r} of hotkey {self.spec.label()} is not on this keyboard"
            )
        mods = 0
        for m in self.spec.modifiers:
            mods |= _MODIFIER_MASKS[m]
        if not mods and _is_text_key(keysym):
            raise HotkeyError(
                f"{self.spec.label()} types a character; add a modifier (e.g. ctrl+alt+{self.spec.key})"
            )
        self.detectable_auto_repeat = _x11.set_detectable_auto_repeat(d)
        num_lock = _num_lock_mask(d)
        variants = sorted({mods, mods | X.LockMask, mods | num_lock, mods | X.LockMask | num_lock})
        root = d.screen().root
        catcher = error.CatchError(error.BadAccess)
        for v in variants:
            root.grab_key(keycode, v, True, X.GrabModeAsync, X.GrabModeAsync, onerror=catcher)
        d.sync()
        if catcher.get_error() is not None:
            for v in variants:
                root.ungrab_key(keycode, v)
            d.sync()
            raise HotkeyError(
                f"{self.spec.label()} is already used as a global shortcut by another application; "
                "choose another push-to-talk key in Settings"
            )
        return keycode, variants, mods

    def _run(
        self,
        d: Display,
        keycode: int,
        variants: list[int],
        guard: _RepeatGuard,
        on_press: Callable[[], None],
        on_release: Callable[[], None],
    ) -> None:
        held = False
        try:
            while not self._stop.is_set():
                while d.pending_events():
                    ev = d.next_event()
                    if ev.type == _GENERIC_EVENT and getattr(ev, "evtype", 0) in (
                        _XI_RAW_KEY_PRESS,
                        _XI_RAW_KEY_RELEASE,
                    ):
                        guard.on_raw(ev.evtype, _raw_detail(ev.data))
                    elif ev.type == X.KeyPress and ev.detail == keycode:
                        # Let the keys we are about to type reach the focused window.
                        d.ungrab_keyboard(X.CurrentTime)
                        d.sync()
                        if held:
                            log.warning("an auto-repeat of %s re-activated its grab; released it", self.spec)
                            continue
                        held = True
                        guard.update(held=True)
                        _safe_call(on_press)
                if held and not _x11.key_is_down(d.query_keymap(), keycode):
                    held = False
                    guard.update()
                    _safe_call(on_release)
                select.select([d.fileno()], [], [], POLL_HELD_S if held else POLL_IDLE_S)
        except error.ConnectionClosedError:
            log.warning("the X connection closed; push-to-talk key %s no longer works", self.spec)
            return
        guard.restore()
        root = d.screen().root
        for v in variants:
            root.ungrab_key(keycode, v)
        d.sync()
        d.close()


def _raw_detail(data: object) -> int:
    """The keycode of an XI2 raw key event (python-xlib leaves its body unparsed):
    deviceid CARD16, time CARD32, detail CARD32, ..."""
    raw = bytes(data) if isinstance(data, (bytes, bytearray)) else b""
    return int.from_bytes(raw[6:10], sys.byteorder) if len(raw) >= 10 else 0


def _select_raw_keys(d: Display) -> bool:
    """Ask for XInput 2.2 raw key events on the root window (delivered even during grabs)."""
    if not d.has_extension("XInputExtension"):
        log.warning("no XInput2: a push-to-talk combo's key will not auto-repeat while the app runs")
        return False
    version = xinput.XIQueryVersion(
        display=d.display,
        opcode=d.display.get_extension_major("XInputExtension"),
        major_version=2,
        minor_version=2,
    )
    if (version.major_version, version.minor_version) < (2, 1):
        return False
    d.screen().root.xinput_select_events(
        [(xinput.AllMasterDevices, xinput.RawKeyPressMask | xinput.RawKeyReleaseMask)]
    )
    d.sync()
    return True


def _safe_call(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:  # a bug in a callback must not kill the key listener
        log.exception("hotkey callback failed")


def _num_lock_mask(d: Display) -> int:
    nl = d.keysym_to_keycode(XK.XK_Num_Lock)
    for index, row in enumerate(d.get_modifier_mapping()):
        if nl and nl in row:
            return 1 << index
    return int(X.Mod2Mask)


def _key_repeat_on(d: Display, keycode: int) -> bool:
    ctl = d.get_keyboard_control()
    return bool((ctl.auto_repeats[keycode // 8] >> (keycode % 8)) & 1)


def _set_key_repeat(d: Display, keycode: int, *, on: bool) -> None:
    mode = X.AutoRepeatModeOn if on else X.AutoRepeatModeOff
    d.change_keyboard_control(key=keycode, auto_repeat_mode=mode)
    d.sync()


def create_hotkey_listener(spec: HotkeySpec | str, display_name: str | None = None) -> HotkeyListener:
    """The listener for this session, or `HotkeyError` saying why there is none."""
    if isinstance(spec, str):
        spec = HotkeySpec.parse(spec)
    kind = session_kind()
    if kind == "x11" or display_name:
        return X11HotkeyListener(spec, display_name)
    if kind == "wayland":
        raise HotkeyError(
            "Wayland lets no app grab a global key: bind a desktop shortcut to `voxtral-desktop --toggle`, "
            "or use the window's hold-to-talk button"
        )
    if kind == "none":
        raise HotkeyError("no display: global hotkeys need an X11 session")
    raise HotkeyError(
        f"global hotkeys are not implemented on {kind} yet; use the window's hold-to-talk button"
    )
