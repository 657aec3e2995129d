"""Typing into the focused X11 window with XTEST, exact for any Unicode character.

A character whose keysym is on the keyboard map (at level 1, or level 2 with Shift) is typed with
its own key. Any other character (é on a US map, ß, 日本, emoji) is typed by mapping its keysym
(0x01000000 + code point) onto a spare keycode, one that has no symbols. After a remap the
injector waits `REMAP_SETTLE_S` so the receiving client has processed the MappingNotify before
the key arrives: without that wait the client may translate the key with its old map. Up to
`MAX_SPARES` characters stay mapped (least recently used first out), so a text that keeps using
the same few accented letters remaps rarely. `close()` puts the spare keycodes back to NoSymbol.

Held modifiers (the Ctrl and Alt of a push-to-talk combo still being held) would turn "h" into
Ctrl+H in the target, so before typing every pressed modifier key is released with XTEST, the
way `xdotool --clearmodifiers` does. They are not pressed again afterwards: the user's own
release of a key the server already counts as up does nothing, whereas pressing it again could
leave a modifier stuck. Caps Lock is a latch and is not touched.

Before each batch of characters the injector checks that the window that had focus when the
utterance began still has it; if it was closed or focus moved, it stops with `TargetWindowGone`
so no text lands in another window.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

from Xlib import XK, X, error
from Xlib.ext import xtest

from voxtral_desktop.platform import _x11
from voxtral_desktop.platform.base import InjectionError, TargetWindowGone, WindowInfo

log = logging.getLogger(__name__)

REMAP_SETTLE_S = 0.05
# A spare keycode typed less than this long ago is not remapped yet: the target may still be
# translating that key press, and it would read it with the new symbol. 0.1 s was enough on an
# idle machine but not with the CPU oversubscribed 3x (tests/platform, kana test); a remap of a
# recently used keycode only happens when one text needs more distinct characters than there
# are spare keycodes, so the wait is rare.
REUSE_AFTER_S = 0.5
MAX_SPARES = 32
CHECK_EVERY_CHARS = 24  # how many characters are typed between two focus checks
_CONTROL_KEYSYMS = {"\n": XK.XK_Return, "\r": XK.XK_Return, "\t": XK.XK_Tab}


def keysym_for_char(ch: str) -> int:
    """The X keysym that types `ch`: Latin-1 keysyms equal the code point, the rest are
    0x01000000 + code point (the X11 Unicode keysym range)."""
    if ch in _CONTROL_KEYSYMS:
        return int(_CONTROL_KEYSYMS[ch])
    cp = ord(ch)
    if 0x20 <= cp <= 0x7E or 0xA0 <= cp <= 0xFF:
        return cp
    return 0x01000000 + cp


class XTestInjector:
    """A long-lived XTEST connection that types text; safe to call from one worker thread."""

    name = "xtest"

    def __init__(
        self, display_name: str | None = None, char_delay_s: float = 0.0, reserved_keys: tuple[str, ...] = ()
    ) -> None:
        try:
            self._d = _x11.open_display(display_name)
        except OSError as exc:
            raise InjectionError(f"cannot type into other windows: {exc}") from None
        if not self._d.has_extension("XTEST"):
            self._d.close()
            raise InjectionError("cannot type into other windows: the X server has no XTEST extension")
        self._lock = threading.Lock()
        self._char_delay_s = char_delay_s
        info = self._d.display.info
        self._lo, self._hi = int(info.min_keycode), int(info.max_keycode)
        mapping = self._d.get_keyboard_mapping(self._lo, self._hi - self._lo + 1)
        self._spares = [kc for kc in range(self._hi, self._lo - 1, -1) if not any(mapping[kc - self._lo])][
            :MAX_SPARES
        ]
        self._remapped: OrderedDict[int, int] = OrderedDict()  # keysym -> spare keycode, LRU order
        self._free = list(reversed(self._spares))  # spare keycodes not holding a keysym
        self._typed_at: dict[int, float] = {}  # spare keycode -> time.monotonic() it was last typed
        self._shift = int(self._d.keysym_to_keycode(XK.XK_Shift_L))
        self._modifiers = _x11.modifier_keycodes(self._d)
        self._reserved: set[int] = set()
        self.reserve_keys(reserved_keys)
        log.info("XTEST injector ready with %d spare keycodes", len(self._spares))

    # ---- TextInjector -------------------------------------------------------------------------
    def focused_window(self) -> WindowInfo | None:
        with self._lock:
            focus = self._d.get_input_focus().focus
            if isinstance(focus, int) or focus is None:  # None (0) or PointerRoot (1)
                return None
            title, app = _x11.window_info(self._d, focus.id)
            return WindowInfo(title=title, app=app, window_id=int(focus.id))

    def type_text(self, text: str, target: WindowInfo | None = None) -> None:
        with self._lock:
            try:
                self._type(text, target)
            except error.ConnectionClosedError:
                raise InjectionError("the X connection closed while typing") from None

    def reserve_keys(self, names: tuple[str, ...]) -> None:
        """Never press these keys (the push-to-talk key): pressing and releasing the key the user
        is holding would make the server count it as released, ending the recording. Their
        characters (a space, for Ctrl+Alt+Space) are typed through a spare keycode instead."""
        codes = {int(self._d.keysym_to_keycode(XK.string_to_keysym(n))) for n in names}
        self._reserved = {kc for kc in codes if kc and kc not in self._modifiers}

    def check_target(self, target: WindowInfo) -> None:
        """Raise `TargetWindowGone` unless `target` still has the keyboard focus."""
        if target.window_id is not None:
            with self._lock:
                self._check_target(target, delivered=0)

    def send_chord(self, keys: tuple[str, ...] = ("Control_L", "v")) -> None:
        """Press and release a key combination (the clipboard-paste method's Ctrl+V)."""
        with self._lock:
            d = self._d
            self._release_held_modifiers()
            codes = [int(d.keysym_to_keycode(XK.string_to_keysym(k))) for k in keys]
            if not all(codes):
                raise InjectionError(f"the key combination {'+'.join(keys)} is not on this keyboard")
            for kc in codes:
                xtest.fake_input(d, X.KeyPress, kc)
            for kc in reversed(codes):
                xtest.fake_input(d, X.KeyRelease, kc)
            d.sync()

    def close(self) -> None:
        with self._lock:
            try:
                for kc in self._remapped.values():
                    self._d.change_keyboard_mapping(kc, [(X.NoSymbol, X.NoSymbol)])
                self._remapped.clear()
                self._d.sync()
                self._d.close()
            except (error.ConnectionClosedError, OSError):
                pass

    # ---- internals ----------------------------------------------------------------------------
    def _type(self, text: str, target: WindowInfo | None) -> None:
        d = self._d
        while d.pending_events():  # keep python-xlib's keymap cache current (layout changes)
            ev = d.next_event()
            if ev.type == X.MappingNotify:
                d.refresh_keyboard_mapping(ev)
        self._release_held_modifiers()
        chars = [c for c in text if c in _CONTROL_KEYSYMS or ord(c) >= 0x20]
        done = 0
        for batch in self._batches(chars):
            if target is not None and target.window_id is not None:
                self._check_target(target, delivered=done)
            self._map_missing([keysym_for_char(c) for c in batch])
            for ch in batch:
                kc, shifted = self._key_for(keysym_for_char(ch))
                if shifted:
                    xtest.fake_input(d, X.KeyPress, self._shift)
                xtest.fake_input(d, X.KeyPress, kc)
                xtest.fake_input(d, X.KeyRelease, kc)
                if shifted:
                    xtest.fake_input(d, X.KeyRelease, self._shift)
                if self._char_delay_s:
                    d.sync()
                    time.sleep(self._char_delay_s)
            d.sync()
            now = time.monotonic()
            for ch in batch:
                ks = keysym_for_char(ch)
                if ks in self._remapped:
                    self._typed_at[self._remapped[ks]] = now
            done += len(batch)

    def _batches(self, chars: list[str]) -> list[list[str]]:
        """Runs of at most CHECK_EVERY_CHARS characters needing at most all spare keycodes."""
        batches: list[list[str]] = []
        batch: list[str] = []
        spare_syms: set[int] = set()
        for ch in chars:
            ks = keysym_for_char(ch)
            new_spare = not self._on_base_map(ks) and ks not in spare_syms
            if batch and (
                len(batch) >= CHECK_EVERY_CHARS or (new_spare and len(spare_syms) >= len(self._spares))
            ):
                batches.append(batch)
                batch, spare_syms = [], set()
            if not self._on_base_map(ks):
                spare_syms.add(ks)
            batch.append(ch)
        if batch:
            batches.append(batch)
        return batches

    def _key_for(self, keysym: int) -> tuple[int, bool]:
        """(keycode, needs Shift) for a keysym that is on the map or on a spare keycode."""
        if keysym in self._remapped:
            self._remapped.move_to_end(keysym)
            return self._remapped[keysym], False
        for kc, index in self._d.keysym_to_keycodes(keysym):
            if index in (0, 1) and kc not in self._spares and kc not in self._reserved:
                return int(kc), index == 1
        raise InjectionError(f"no key can type keysym {keysym:#x}")  # _map_missing prevents this

    def _on_base_map(self, keysym: int) -> bool:
        """Whether a key of the user's own map types `keysym` (alone or with Shift)."""
        return any(
            index in (0, 1) and kc not in self._spares and kc not in self._reserved
            for kc, index in self._d.keysym_to_keycodes(keysym)
        )

    def _map_missing(self, keysyms: list[int]) -> None:
        """Put every keysym of the batch that no key types onto a spare keycode; wait once."""
        missing = list(
            dict.fromkeys(ks for ks in keysyms if ks not in self._remapped and not self._on_base_map(ks))
        )
        if not missing:
            return
        if not self._spares:
            raise InjectionError("the keyboard map has no free keycode to type non-keyboard characters")
        needed = set(keysyms)
        chosen: list[tuple[int, int]] = []
        for ks in missing:
            if self._free:
                kc = self._free.pop()
            else:  # reuse the least recently used mapping this batch does not need
                victim = next((k for k in self._remapped if k not in needed), None)
                if victim is None:
                    raise InjectionError("too many distinct characters in one batch for the spare keycodes")
                kc = self._remapped.pop(victim)
            chosen.append((kc, ks))
        wait = max(REUSE_AFTER_S - (time.monotonic() - self._typed_at.get(kc, 0.0)) for kc, _ in chosen)
        if wait > 0:
            time.sleep(wait)
        for kc, ks in chosen:
            self._d.change_keyboard_mapping(kc, [(ks, ks)])
            self._remapped[ks] = kc
        self._d.sync()
        time.sleep(REMAP_SETTLE_S)

    def _release_held_modifiers(self) -> None:
        keymap = self._d.query_keymap()
        held = [kc for kc in self._modifiers if _x11.key_is_down(keymap, kc)]
        for kc in held:
            xtest.fake_input(self._d, X.KeyRelease, kc)
        if held:
            self._d.sync()
            log.debug("released held modifier keycodes %s before typing", held)

    def _check_target(self, target: WindowInfo, delivered: int) -> None:
        assert target.window_id is not None
        focus = self._d.get_input_focus().focus
        focus_id = None if isinstance(focus, int) or focus is None else int(focus.id)
        if focus_id == target.window_id:
            return
        if not _x11.window_exists(self._d, target.window_id):
            raise TargetWindowGone(f"{target.describe()} was closed while typing", delivered)
        where = (
            "no window"
            if focus_id is None
            else WindowInfo(*_x11.window_info(self._d, focus_id), focus_id).describe()
        )
        raise TargetWindowGone(
            f"focus moved from {target.describe()} to {where}; "
            "stopped typing so the text does not land in the wrong window",
            delivered,
        )
