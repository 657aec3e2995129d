"""PySide6 6.12.0 loses a reference to `True` on every Python-side emit; the ui package repairs it."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal

from voxtral_desktop.ui import qt_fixes


class _Emitter(QObject):
    flag = Signal(bool)
    nothing = Signal()


def test_many_emissions_keep_true_alive(qapp: object) -> None:
    e = _Emitter()
    before = sys.getrefcount(True)
    for _ in range(5000):  # without the fix: "Fatal Python error: bool_dealloc"
        e.flag.emit(True)
        e.nothing.emit()
    assert abs(sys.getrefcount(True) - before) <= 2  # unfixed: 10 000 fewer
    assert not qt_fixes.install()  # already installed, and idempotent
    assert not qt_fixes.emit_loses_a_reference()
