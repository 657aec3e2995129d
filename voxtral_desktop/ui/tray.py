"""The tray icon (where the desktop has a tray) and the app icon, drawn in code."""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QAction, QColor, QIcon, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

log = logging.getLogger(__name__)


def app_icon(recording: bool = False) -> QIcon:
    """A microphone on a round badge; red while recording."""
    pix = QPixmap(64, 64)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setBrush(QColor("#d93025" if recording else "#ff7000"))
    p.setPen(Qt.PenStyle.NoPen)
    p.drawEllipse(QRectF(2, 2, 60, 60))
    p.setBrush(QColor("white"))
    p.drawRoundedRect(QRectF(24, 12, 16, 28), 8, 8)
    pen = QPen(QColor("white"), 4)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    p.setPen(pen)
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawArc(QRectF(17, 20, 30, 28), 180 * 16, 180 * 16)
    p.drawLine(QPointF(32, 48), QPointF(32, 54))
    p.end()
    return QIcon(pix)


class Tray(QObject):
    toggle_requested = Signal()
    show_requested = Signal()
    quit_requested = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.icon = QSystemTrayIcon(app_icon(), self)
        self.icon.setToolTip("Voxtral Desktop")
        menu = QMenu()
        self.toggle_action = QAction("Start dictation", menu)
        show = QAction("Show window", menu)
        quit_ = QAction("Quit", menu)
        menu.addAction(self.toggle_action)
        menu.addAction(show)
        menu.addSeparator()
        menu.addAction(quit_)
        self._menu = menu
        self.icon.setContextMenu(menu)
        self.toggle_action.triggered.connect(self.toggle_requested)
        show.triggered.connect(self.show_requested)
        quit_.triggered.connect(self.quit_requested)
        self.icon.activated.connect(self._on_activated)

    @staticmethod
    def available() -> bool:
        return QSystemTrayIcon.isSystemTrayAvailable()

    def show(self) -> None:
        self.icon.show()

    def set_recording(self, recording: bool) -> None:
        self.icon.setIcon(app_icon(recording))
        self.toggle_action.setText("Stop dictation" if recording else "Start dictation")

    def notify(self, message: str) -> None:
        self.icon.showMessage("Voxtral Desktop", message, QSystemTrayIcon.MessageIcon.Warning, 5000)

    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self.show_requested.emit()
