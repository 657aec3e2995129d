"""Work-arounds for bugs of the pinned PySide6, applied once when `voxtral_desktop.ui` is imported.

PySide6 6.12.0 on Python < 3.12: `SignalInstance.emit()` returns `True` without taking a
reference, so every signal emitted from Python takes one reference away from the `True`
singleton. After a few hundred emissions the count reaches zero and the interpreter aborts with
"Fatal Python error: bool_dealloc" (at the latest when it exits). Python 3.12+ makes `True`
immortal, which hides the bug. The fix is detected, not assumed: one probe emission shows whether
this PySide6 loses a reference, and only then is `emit` wrapped to give it back.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from typing import Any

from PySide6.QtCore import QObject, Signal, SignalInstance

log = logging.getLogger(__name__)

_incref = ctypes.pythonapi.Py_IncRef
_incref.argtypes = [ctypes.py_object]
_incref.restype = None


class _Probe(QObject):
    ping = Signal()


def emit_loses_a_reference() -> bool:
    """Whether `SignalInstance.emit` drops a reference to `True` (the PySide6 6.12.0 bug)."""
    probe = _Probe()
    before = sys.getrefcount(True)
    probe.ping.emit()
    lost = sys.getrefcount(True) < before
    if lost:
        _incref(True)  # repair the probe's own emission
    return lost


def install() -> bool:
    """Wrap `SignalInstance.emit` if it leaks; returns whether the fix was needed."""
    if getattr(SignalInstance.emit, "_voxtral_fixed", False) or not emit_loses_a_reference():
        return False
    original = SignalInstance.emit

    def emit(self: SignalInstance, *args: Any) -> Any:
        result = original(self, *args)
        if result is True:
            _incref(True)
        return result

    emit._voxtral_fixed = True  # type: ignore[attr-defined]
    SignalInstance.emit = emit  # type: ignore[method-assign]
    log.debug("PySide6 emit() reference leak detected; compensating")
    return True
