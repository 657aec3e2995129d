"""The desktop app: the only package that imports PySide6. Entry point: `app.run_app(argv)`."""

from voxtral_desktop.ui import qt_fixes

qt_fixes.install()
