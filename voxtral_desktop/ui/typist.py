"""The typist: its own QThread owns the long-lived `TextInjector` and types each text delta.

Typing has its own thread so a slow target window (or the 50 ms a keyboard remap needs) delays
neither recognition nor the GUI. Deltas of one utterance are typed in order into the window
that had focus when the utterance began. The first failure of an utterance (window closed,
focus moved, typing blocked) stops typing for the rest of it and reports everything that was
not typed, which the app keeps on screen and in the history.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from voxtral_desktop.platform.base import InjectionError, TargetWindowGone, TextInjector, WindowInfo
from voxtral_desktop.ui.events import DeliveryFailed, TextDelta, UtteranceStarted

log = logging.getLogger(__name__)


class Typist(QObject):
    ready = Signal(str)  # the injector's name
    unavailable = Signal(str)  # why typing into other windows is impossible
    target_found = Signal(object)  # UtteranceStarted, with the focused window
    delivery_failed = Signal(object)  # DeliveryFailed

    def __init__(self, make_injector: Callable[[], TextInjector]) -> None:
        super().__init__()
        self._make_injector = make_injector
        self._injector: TextInjector | None = None
        self._utterance: int | None = None
        self._target: WindowInfo | None = None
        self._deliver = False
        self._failed: DeliveryFailed | None = None
        # Deltas that queue up while a slow delivery runs are typed together in one call.
        self._pending: list[str] = []
        self._own_windows: frozenset[int] = frozenset()  # never type into the app's own windows
        self._reserved: tuple[str, ...] = ()
        self._flush = QTimer(self)
        self._flush.setSingleShot(True)
        self._flush.setInterval(0)
        self._flush.timeout.connect(self._type_pending)

    @Slot()
    def start(self) -> None:
        """Create the injector in this thread (X connections belong to the thread using them)."""
        try:
            self._injector = self._make_injector()
        except InjectionError as exc:
            log.warning("typing into other windows is unavailable: %s", exc)
            self.unavailable.emit(str(exc))
            return
        self.reserve_keys(self._reserved)
        self.ready.emit(self._injector.name)

    @Slot(object)
    def reserve_keys(self, names: tuple[str, ...]) -> None:
        """Keys the injector must never press (the push-to-talk key), where it supports that."""
        self._reserved = tuple(names)
        reserve = getattr(self._injector, "reserve_keys", None)
        if reserve is not None:
            reserve(self._reserved)

    @Slot(object)
    def set_own_windows(self, window_ids: frozenset[int]) -> None:
        self._own_windows = frozenset(window_ids)

    @Slot(int, float, bool)
    def begin(self, utterance_id: int, started_at: float, deliver: bool) -> None:
        self._type_pending()  # the end of the previous utterance goes where it belongs
        self._flush.stop()
        self._utterance, self._failed = utterance_id, None
        self._deliver = deliver and self._injector is not None
        self._target = None
        if self._injector is not None:
            try:
                self._target = self._injector.focused_window()
            except InjectionError as exc:
                log.info("cannot tell which window has focus: %s", exc)
        if self._target is not None and self._target.window_id in self._own_windows:
            log.info("the app's own window has focus: showing the text without typing it")
            self._deliver = False
        self.target_found.emit(UtteranceStarted(utterance_id, started_at, self._target))

    @Slot(object)
    def deliver(self, delta: TextDelta) -> None:
        if delta.utterance_id != self._utterance or not delta.text or not self._deliver:
            return
        if self._failed is not None:  # keep collecting what the target never got
            self._failed = DeliveryFailed(
                self._failed.utterance_id, self._failed.message, self._failed.undelivered + delta.text
            )
            self.delivery_failed.emit(self._failed)
            return
        self._pending.append(delta.text)
        if not self._flush.isActive():
            self._flush.start()

    def _type_pending(self) -> None:
        text, self._pending = "".join(self._pending), []
        if not text or self._utterance is None:
            return
        assert self._injector is not None
        log.debug(
            "typing %d characters into %s",
            len(text),
            self._target.describe() if self._target else "the focused window",
        )
        try:
            self._injector.type_text(text, self._target)
        except InjectionError as exc:
            delivered = exc.delivered if isinstance(exc, TargetWindowGone) else 0
            log.warning("typing stopped: %s", exc)
            self._failed = DeliveryFailed(self._utterance, str(exc), text[delivered:])
            self.delivery_failed.emit(self._failed)

    @Slot()
    def shutdown(self) -> None:
        if self._injector is not None:
            self._injector.close()
            self._injector = None
