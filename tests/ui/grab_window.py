"""Save a screenshot of the top-level X window whose title is argv[1] to argv[2] (PNG)."""

from __future__ import annotations

import sys

from PySide6.QtGui import QGuiApplication
from Xlib import display


def find_window(title: str) -> int:
    d = display.Display()
    try:
        stack = [d.screen().root]
        while stack:
            win = stack.pop()
            try:
                if win.get_wm_name() == title:
                    return int(win.id)
                stack.extend(win.query_tree().children)
            except Exception:  # a window closed while we walked the tree
                continue
    finally:
        d.close()
    return 0


def main() -> int:
    title, out = sys.argv[1], sys.argv[2]
    app = QGuiApplication(sys.argv[:1])
    wid = find_window(title)
    if not wid:
        sys.stderr.write(f"no window titled {title!r}\n")
        return 1
    ok = app.primaryScreen().grabWindow(wid).save(out, "PNG")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
