"""The X11 push-to-talk key under a real X server (Xvfb), pressed with XTEST."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from Xlib import XK, X, display
from Xlib.ext import xtest

from voxtral_desktop.platform import hotkeys
from voxtral_desktop.platform.base import HotkeyError, HotkeySpec
from voxtral_desktop.platform.hotkeys import X11HotkeyListener, create_hotkey_listener, keysym_for

# How long a test holds a key: with Xvfb's auto-repeat set to 150 ms delay / 20 ms interval
# (xsession.py) this produces about 17 repeats. Holding is the scenario, not a synchronisation.
HOLD_S = 0.5


class Events:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.pressed = threading.Event()
        self.released = threading.Event()

    def press(self) -> None:
        self.log.append("press")
        self.pressed.set()

    def release(self) -> None:
        self.log.append("release")
        self.released.set()


@pytest.fixture
def xdisplay(xvfb: str) -> Iterator[display.Display]:
    d = display.Display(xvfb)
    yield d
    d.close()


def _keycode(d: display.Display, name: str) -> int:
    return int(d.keysym_to_keycode(XK.string_to_keysym(name)))


def _fake(d: display.Display, kind: int, *names: str) -> None:
    for name in names:
        xtest.fake_input(d, kind, _keycode(d, name))
    d.sync()


def test_parse_hotkeys() -> None:
    assert HotkeySpec.parse("Ctrl+Alt+Space") == HotkeySpec("Space", frozenset({"ctrl", "alt"}))
    assert str(HotkeySpec.parse("alt+CTRL+space")) == "ctrl+alt+space"
    assert HotkeySpec.parse("F9").label() == "F9"
    assert (
        keysym_for("space") == XK.XK_space
        and keysym_for("Pause") == XK.XK_Pause
        and keysym_for("f9") == XK.XK_F9
    )
    for bad in ("", "ctrl+", "hyper+a", "ctrl+alt"):
        with pytest.raises(HotkeyError):
            HotkeySpec.parse(bad)


@pytest.mark.parametrize("switch_repeat_off", [True, False], ids=["repeat-off-while-held", "repeat-left-on"])
def test_press_and_hold_with_auto_repeat_is_one_press_one_release(
    xvfb: str, xdisplay: display.Display, switch_repeat_off: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not switch_repeat_off:  # repeats re-grab the keyboard: the listener must still see one hold
        monkeypatch.setattr(hotkeys, "_set_key_repeat", lambda d, kc, on: None)
    listener = X11HotkeyListener(HotkeySpec.parse("F9"), xvfb)
    events = Events()
    listener.start(events.press, events.release)
    try:
        assert listener.detectable_auto_repeat
        _fake(xdisplay, X.KeyPress, "F9")
        assert events.pressed.wait(5)
        assert not events.released.wait(HOLD_S)  # held through many auto-repeat periods
        _fake(xdisplay, X.KeyRelease, "F9")
        assert events.released.wait(5)
        assert events.log == ["press", "release"]
    finally:
        listener.stop()
    # The key's auto-repeat is as it was once the listener stops.
    ctl = xdisplay.get_keyboard_control()
    kc = _keycode(xdisplay, "F9")
    assert (ctl.auto_repeats[kc // 8] >> (kc % 8)) & 1


def test_combo_with_modifiers_and_num_lock(xvfb: str, xdisplay: display.Display) -> None:
    listener = X11HotkeyListener(HotkeySpec.parse("ctrl+alt+space"), xvfb)
    events = Events()
    listener.start(events.press, events.release)
    try:
        _fake(xdisplay, X.KeyPress, "space")  # without the modifiers: not our key (the log
        _fake(xdisplay, X.KeyRelease, "space")  # below would start with its press otherwise)
        _fake(xdisplay, X.KeyPress, "Num_Lock")  # Num Lock on must not disable the key
        _fake(xdisplay, X.KeyRelease, "Num_Lock")
        _fake(xdisplay, X.KeyPress, "Control_L", "Alt_L", "space")
        assert events.pressed.wait(5)
        _fake(xdisplay, X.KeyRelease, "space", "Alt_L", "Control_L")
        assert events.released.wait(5)
        assert events.log == ["press", "release"]
    finally:
        _fake(xdisplay, X.KeyPress, "Num_Lock")
        _fake(xdisplay, X.KeyRelease, "Num_Lock")
        listener.stop()


def _wait_repeat_off(d: display.Display, name: str) -> None:
    """What a human's pause between modifiers and key gives the listener: time to react."""
    kc = _keycode(d, name)
    for _ in range(200):
        if not (d.get_keyboard_control().auto_repeats[kc // 8] >> (kc % 8)) & 1:
            return
        threading.Event().wait(0.005)
    pytest.fail(f"{name} still auto-repeats with the combo's modifiers held")


@pytest.mark.parametrize("combo", ["F9", "ctrl+alt+space"])
def test_text_typed_during_a_long_hold_reaches_the_focused_window(
    xvfb: str, xdisplay: display.Display, combo: str
) -> None:
    """A hold longer than the auto-repeat delay must not let a repeat re-grab the keyboard
    (which would swallow the typed text)."""
    from xsession import Receiver

    from voxtral_desktop.platform.typing.x11 import XTestInjector

    receiver = Receiver(xvfb)
    spec = HotkeySpec.parse(combo)
    injector = XTestInjector(xvfb, reserved_keys=(spec.key,))  # what the app does
    listener = X11HotkeyListener(spec, xvfb)
    events = Events()
    listener.start(events.press, events.release)
    names = ["Control_L", "Alt_L", "space"] if combo != "F9" else ["F9"]
    try:
        target = injector.focused_window()
        _fake(xdisplay, X.KeyPress, *names[:-1])
        if len(names) > 1:
            _wait_repeat_off(xdisplay, names[-1])
        _fake(xdisplay, X.KeyPress, names[-1])
        assert events.pressed.wait(5)
        injector.type_text("before ", target)
        assert not events.released.wait(HOLD_S)  # longer than the auto-repeat delay
        injector.type_text("après — 日本", target)
        assert receiver.wait_for("before après — 日本") == "before après — 日本"
        _fake(xdisplay, X.KeyRelease, *reversed(names))
        assert events.released.wait(5) and events.log == ["press", "release"]
    finally:
        listener.stop()
        injector.close()
        receiver.close()


def test_space_still_repeats_when_the_combo_modifiers_are_up(xvfb: str, xdisplay: display.Display) -> None:
    listener = X11HotkeyListener(HotkeySpec.parse("ctrl+alt+space"), xvfb)
    listener.start(lambda: None, lambda: None)
    kc = _keycode(xdisplay, "space")

    def repeats() -> bool:
        return bool((xdisplay.get_keyboard_control().auto_repeats[kc // 8] >> (kc % 8)) & 1)

    try:
        assert repeats()
        _fake(xdisplay, X.KeyPress, "Control_L", "Alt_L")
        _wait_repeat_off(xdisplay, "space")
        _fake(xdisplay, X.KeyRelease, "Alt_L", "Control_L")
        for _ in range(200):
            if repeats():
                break
            threading.Event().wait(0.005)
        assert repeats()
    finally:
        listener.stop()
    assert repeats()  # and stop() leaves it as it found it


def test_a_printable_key_needs_a_modifier(xvfb: str) -> None:
    with pytest.raises(HotkeyError, match="add a modifier"):
        X11HotkeyListener(HotkeySpec.parse("space"), xvfb).start(lambda: None, lambda: None)


def test_key_taken_by_another_app_is_a_clear_error(xvfb: str, xdisplay: display.Display) -> None:
    other = display.Display(xvfb)  # "another application" grabs F8 first
    kc = _keycode(other, "F8")
    other.screen().root.grab_key(kc, X.AnyModifier, True, X.GrabModeAsync, X.GrabModeAsync)
    other.sync()
    try:
        listener = X11HotkeyListener(HotkeySpec.parse("F8"), xvfb)
        with pytest.raises(
            HotkeyError, match="F8 is already used as a global shortcut by another application"
        ):
            listener.start(lambda: None, lambda: None)
        # Nothing half-grabbed is left behind: once the other app lets go, F8 works for us.
        other.screen().root.ungrab_key(kc, X.AnyModifier)
        other.sync()
        events = Events()
        listener = X11HotkeyListener(HotkeySpec.parse("F8"), xvfb)
        listener.start(events.press, events.release)
        _fake(xdisplay, X.KeyPress, "F8")
        _fake(xdisplay, X.KeyRelease, "F8")
        assert events.released.wait(5) and events.log == ["press", "release"]
        listener.stop()
    finally:
        other.close()


def test_unknown_key_and_no_display(monkeypatch: pytest.MonkeyPatch, xvfb: str) -> None:
    with pytest.raises(HotkeyError, match="not on this keyboard"):
        X11HotkeyListener(HotkeySpec("NoSuchKey"), xvfb).start(lambda: None, lambda: None)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("XDG_SESSION_TYPE", raising=False)
    with pytest.raises(HotkeyError, match="no display"):
        create_hotkey_listener("F9")
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    with pytest.raises(HotkeyError, match="voxtral-desktop --toggle"):
        create_hotkey_listener("F9")
