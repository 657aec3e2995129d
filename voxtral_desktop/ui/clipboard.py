"""The clipboard-paste typing method: put the text on the clipboard, press Ctrl+V, put the
user's clipboard back.

The clipboard belongs to the GUI thread, so the typist thread asks a `ClipboardBridge` living
there (blocking until it is done) to save the user's clipboard — every format it holds, not only
text — and set ours. The paste chord is sent with XTEST (X11 only here). On X11 the target reads
the clipboard from *our* process after it sees Ctrl+V, so we must neither change nor restore it
too early: each paste waits `PASTE_SETTLE_S`, and the user's clipboard comes back
`RESTORE_AFTER_MS` after the last paste of a burst.
"""

from __future__ import annotations

import logging
import time

from PySide6.QtCore import QMimeData, QObject, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QGuiApplication

from voxtral_desktop.platform.base import InjectionError, WindowInfo

log = logging.getLogger(__name__)

PASTE_SETTLE_S = 0.25
RESTORE_AFTER_MS = 700


# X11 selection protocol targets that Qt lists among a foreign clipboard's formats; they describe
# the selection rather than hold its data, so they are not copied.
_X11_META_TARGETS = frozenset(
    {"TARGETS", "MULTIPLE", "TIMESTAMP", "SAVE_TARGETS", "DELETE", "INSERT_SELECTION", "INSERT_PROPERTY"}
)


def copy_mime(source: QMimeData | None) -> QMimeData:
    """A deep copy of every data format of a clipboard's contents (text, HTML, images, files,
    application formats)."""
    copy = QMimeData()
    if source is not None:
        for fmt in source.formats():
            if fmt not in _X11_META_TARGETS:
                copy.setData(fmt, source.data(fmt))
    return copy


class ClipboardBridge(QObject):
    """Lives in the GUI thread."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._saved: QMimeData | None = None
        self._restore = QTimer(self)
        self._restore.setSingleShot(True)
        self._restore.setInterval(RESTORE_AFTER_MS)
        self._restore.timeout.connect(self.restore)

    @Slot(str)
    def set_text(self, text: str) -> None:
        clipboard = QGuiApplication.clipboard()
        if self._saved is None:
            self._saved = copy_mime(clipboard.mimeData())
        clipboard.setText(text)
        self._restore.start()

    @Slot()
    def restore(self) -> None:
        self._restore.stop()
        if self._saved is not None:
            QGuiApplication.clipboard().setMimeData(self._saved)  # the clipboard takes ownership
            log.info("restored the clipboard (%d formats)", len(self._saved.formats()))
            self._saved = None


class _Caller(QObject):
    """Emits from the typist thread into the bridge, waiting until the bridge is done."""

    set_text = Signal(str)


class ClipboardPasteInjector:
    """`TextInjector` that pastes; `keys` is the XTEST injector that presses Ctrl+V."""

    name = "clipboard"

    def __init__(self, bridge: ClipboardBridge, keys: object) -> None:
        send_chord = getattr(keys, "send_chord", None)
        if send_chord is None:
            raise InjectionError("the clipboard method needs X11 keystrokes here (XTEST) to press Ctrl+V")
        self._keys = keys
        self._send_chord = send_chord
        self._caller = _Caller()
        self._caller.set_text.connect(bridge.set_text, Qt.ConnectionType.BlockingQueuedConnection)

    def reserve_keys(self, names: tuple[str, ...]) -> None:
        reserve = getattr(self._keys, "reserve_keys", None)
        if reserve is not None:
            reserve(names)

    def focused_window(self) -> WindowInfo | None:
        return self._keys.focused_window()  # type: ignore[attr-defined, no-any-return]

    def type_text(self, text: str, target: WindowInfo | None = None) -> None:
        if not text:
            return
        check = getattr(self._keys, "check_target", None)
        if target is not None and check is not None:
            check(target)
        self._caller.set_text.emit(text)
        self._send_chord(("Control_L", "v"))
        time.sleep(PASTE_SETTLE_S)  # let the target fetch the selection before it changes

    def close(self) -> None:
        self._keys.close()  # type: ignore[attr-defined]
