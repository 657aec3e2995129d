"""XTEST typing into another application's window (a Qt receiver in a subprocess) under Xvfb."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from Xlib import XK, X, display
from Xlib.ext import xtest
from xsession import Receiver

from voxtral_desktop.platform.base import TargetWindowGone, WindowInfo
from voxtral_desktop.platform.typing import create_injector
from voxtral_desktop.platform.typing.x11 import XTestInjector, keysym_for_char

UNICODE_TEXT = "Héllo, wörld! café Straße 日本語 — ✓ € 😀 ~`{}|<>?\nnext line: ÀÉÎ ñ ß"


@pytest.fixture
def receiver(xvfb: str) -> Iterator[Receiver]:
    r = Receiver(xvfb)
    yield r
    r.close()


@pytest.fixture
def injector(xvfb: str) -> Iterator[XTestInjector]:
    inj = XTestInjector(xvfb)
    yield inj
    inj.close()


def test_keysyms() -> None:
    assert keysym_for_char("a") == ord("a") and keysym_for_char("é") == 0xE9
    assert keysym_for_char("\n") == XK.XK_Return
    assert keysym_for_char("日") == 0x01000000 + ord("日")
    assert keysym_for_char("😀") == 0x0101F600


def test_unicode_is_typed_exactly_in_pieces(receiver: Receiver, injector: XTestInjector) -> None:
    target = injector.focused_window()
    assert target is not None and target.window_id == receiver.window_id and target.title == "receiver"
    for i in range(0, len(UNICODE_TEXT), 5):  # token-sized pieces, as dictation delivers them
        injector.type_text(UNICODE_TEXT[i : i + 5], target)
    assert receiver.wait_for(UNICODE_TEXT) == UNICODE_TEXT


def test_held_push_to_talk_modifiers_do_not_mangle_text(
    xvfb: str, receiver: Receiver, injector: XTestInjector
) -> None:
    user = display.Display(xvfb)  # the user still holds Ctrl+Alt of the push-to-talk combo
    for name in ("Control_L", "Alt_L"):
        xtest.fake_input(user, X.KeyPress, user.keysym_to_keycode(XK.string_to_keysym(name)))
    user.sync()
    try:
        injector.type_text("hello wörld", injector.focused_window())
        assert receiver.wait_for("hello wörld") == "hello wörld"
    finally:
        user.close()


def test_the_held_push_to_talk_key_is_never_pressed_by_typing(xvfb: str, receiver: Receiver) -> None:
    """Typing a space with the Space key the user holds (Ctrl+Alt+Space) would release it."""
    user = display.Display(xvfb)
    space = user.keysym_to_keycode(XK.XK_space)
    user.change_keyboard_control(key=space, auto_repeat_mode=X.AutoRepeatModeOff)  # as the listener does
    xtest.fake_input(user, X.KeyPress, space)  # no grab here, so the receiver gets this one space
    user.sync()
    injector = XTestInjector(xvfb, reserved_keys=("space",))
    try:
        injector.type_text("a b  c", injector.focused_window())
        assert receiver.wait_for(" a b  c") == " a b  c"
        assert (user.query_keymap()[space // 8] >> (space % 8)) & 1  # still held
    finally:
        injector.close()
        xtest.fake_input(user, X.KeyRelease, space)
        user.change_keyboard_control(key=space, auto_repeat_mode=X.AutoRepeatModeOn)
        user.sync()
        user.close()


def test_many_distinct_characters_recycle_spare_keycodes(receiver: Receiver, injector: XTestInjector) -> None:
    text = "".join(chr(c) for c in range(0x3041, 0x3041 + 60))  # 60 kana, more than the spares
    injector.type_text(text, injector.focused_window())
    assert receiver.wait_for(text) == text


def test_target_window_closing_while_typing_stops_with_a_clear_error(
    receiver: Receiver, injector: XTestInjector
) -> None:
    target = injector.focused_window()
    assert target is not None
    injector.type_text("first part ", target)
    assert receiver.wait_for("first part ") == "first part "
    receiver.close()
    with pytest.raises(TargetWindowGone, match="was closed while typing") as info:
        injector.type_text("second part", target)
    assert info.value.delivered == 0


def test_focus_moving_to_another_window_stops_typing(xvfb: str, injector: XTestInjector) -> None:
    first = Receiver(xvfb)
    target = injector.focused_window()
    second = Receiver(xvfb)  # takes the focus
    try:
        assert injector.focused_window() != target
        with pytest.raises(TargetWindowGone, match="focus moved from receiver"):
            injector.type_text("not for you", target)
        assert second.wait_for("x", timeout_s=0.3) == ""
    finally:
        first.close()
        second.close()


def test_auto_picks_xtest_on_x11(xvfb: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPLAY", xvfb)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("XDG_SESSION_TYPE", raising=False)
    inj = create_injector("auto")
    try:
        assert inj.name == "xtest"
    finally:
        inj.close()


def test_window_info_describe() -> None:
    assert WindowInfo("notes", "kate", 1).describe() == "notes (kate)"
    assert WindowInfo().describe() == "an unnamed window"
