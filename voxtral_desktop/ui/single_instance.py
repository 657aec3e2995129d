"""One app per user: a second launch hands its request ("show" or "toggle") to the first one
over a local socket and exits."""

from __future__ import annotations

import getpass
import logging
import os
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

log = logging.getLogger(__name__)

TIMEOUT_MS = 1000


def server_name() -> str:
    """A socket in $XDG_RUNTIME_DIR when there is one (per user and per login session)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return str(Path(runtime) / "voxtral-desktop.sock")
    return f"voxtral-desktop-{getpass.getuser()}"


def send_to_running(message: str, name: str | None = None) -> bool:
    """Deliver `message` to a running instance; False if there is none."""
    sock = QLocalSocket()
    sock.connectToServer(name or server_name())
    if not sock.waitForConnected(TIMEOUT_MS):
        return False
    sock.write(message.encode() + b"\n")
    sock.flush()
    sock.waitForBytesWritten(TIMEOUT_MS)
    sock.disconnectFromServer()
    return True


class InstanceServer(QObject):
    message = Signal(str)

    def __init__(self, name: str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name or server_name()
        self._server = QLocalServer(self)
        self._server.newConnection.connect(self._on_connection)

    def listen(self) -> bool:
        if self._server.listen(self.name):
            return True
        QLocalServer.removeServer(self.name)  # a stale socket left by a crashed instance
        ok = self._server.listen(self.name)
        if not ok:
            log.warning("single-instance server: %s", self._server.errorString())
        return ok

    def _on_connection(self) -> None:
        sock = self._server.nextPendingConnection()
        if sock is None:
            return

        def read() -> None:
            while sock.canReadLine():
                self.message.emit(bytes(sock.readLine().data()).decode(errors="replace").strip())

        sock.readyRead.connect(read)
        sock.disconnected.connect(sock.deleteLater)
        read()
