"""A separate app that receives typed text: a QPlainTextEdit that has the keyboard focus.

Run as a subprocess under an X display. It prints `READY <window id>` once it has focus, then
one JSON string per change of its text; it exits on stdin EOF or on "quit".
"""

from __future__ import annotations

import json
import sys

from PySide6.QtCore import QMimeData, QSocketNotifier, QTimer
from PySide6.QtWidgets import QApplication, QPlainTextEdit


def main() -> int:
    app = QApplication(sys.argv[:1])
    edit = QPlainTextEdit()
    edit.setWindowTitle("receiver")
    edit.resize(380, 300)
    edit.move(900, 40)  # beside the app's main window (no window manager: windows sit where put)
    edit.show()
    edit.activateWindow()
    edit.setFocus()

    def changed() -> None:
        sys.stdout.write(json.dumps(edit.toPlainText()) + "\n")
        sys.stdout.flush()

    edit.textChanged.connect(changed)

    def ready() -> None:
        if not edit.hasFocus() or not edit.isActiveWindow():
            edit.activateWindow()
            QTimer.singleShot(20, ready)
            return
        sys.stdout.write(f"READY {int(edit.winId())}\n")
        sys.stdout.flush()

    notifier = QSocketNotifier(sys.stdin.fileno(), QSocketNotifier.Type.Read)

    def on_stdin() -> None:
        line = sys.stdin.readline()
        command, _, arg = line.strip().partition(" ")
        if not line or command == "quit":
            app.quit()
        elif command == "setclip":  # become the clipboard owner with these formats
            data = QMimeData()
            for fmt, value in json.loads(arg).items():
                data.setData(fmt, value.encode("utf-8"))
            app.clipboard().setMimeData(data)
            sys.stdout.write("CLIPSET\n")
            sys.stdout.flush()
        elif command == "clip":  # what the clipboard holds now, every format
            md = app.clipboard().mimeData()
            formats = (
                {f: bytes(md.data(f).data()).decode("utf-8", "replace") for f in md.formats()} if md else {}
            )
            sys.stdout.write("CLIP " + json.dumps(formats) + "\n")
            sys.stdout.flush()
        elif command == "focus":
            edit.activateWindow()
            edit.setFocus()
            ready()

    notifier.activated.connect(on_stdin)
    QTimer.singleShot(0, ready)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
