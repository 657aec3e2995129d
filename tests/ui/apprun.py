"""Running the real app in a subprocess under Xvfb, and talking to it from a test."""

from __future__ import annotations

import json
import os
import queue
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from Xlib import XK, X, display
from Xlib.ext import xtest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCREENSHOTS = REPO / "resources" / "screenshots"


def session_env(xvfb: str, tmp_path: Path) -> dict[str, str]:
    """Environment of one desktop session: its own runtime, config and data dirs."""
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = dict(os.environ)
    for var in ("WAYLAND_DISPLAY", "XDG_SESSION_TYPE", "QT_QPA_PLATFORM"):
        env.pop(var, None)
    env.update(
        DISPLAY=xvfb,
        QT_QPA_PLATFORM="xcb",
        XDG_RUNTIME_DIR=str(runtime),
        XDG_DATA_HOME=str(tmp_path / "data"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        PYTHONUNBUFFERED="1",
    )
    return env


class AppProcess:
    """`python -m voxtral_desktop.ui ARGS -v`, with its log lines collected as they come."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voxtral_desktop.ui", *args, "-v"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            encoding="utf-8",
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._queue.put(line.rstrip("\n"))
        self._queue.put("")

    def wait_log(self, needle: str, timeout_s: float = 60.0, since: int = 0) -> str:
        """The first log line (from `since`) containing `needle`; fails with the log if none."""
        for line in self.lines[since:]:
            if needle in line:
                return line
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line == "" and self.proc.poll() is not None:
                break
            self.lines.append(line)
            if needle in line:
                return line
        tail = "\n".join(self.lines[-30:])
        pytest.fail(
            f"the app never logged {needle!r} (exit code {self.proc.poll()}); its log:\n{tail}", pytrace=False
        )

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: the app quits cleanly
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


class Keyboard:
    """The user's keyboard: key presses through XTEST on the test's own X connection."""

    def __init__(self, xvfb: str) -> None:
        self.d = display.Display(xvfb)

    def _code(self, name: str) -> int:
        return int(self.d.keysym_to_keycode(XK.string_to_keysym(name)))

    def press(self, *names: str) -> None:
        for n in names:
            xtest.fake_input(self.d, X.KeyPress, self._code(n))
        self.d.sync()

    def press_combo(self, *names: str) -> None:
        """Press modifiers, then the key, the way a person does: the key goes down only after the
        app's listener has switched its auto-repeat off (a person leaves ~50 ms; the listener
        needs ~1 ms). Pressing all at once in one XTEST burst is faster than any hand."""
        *mods, key = names
        self.press(*mods)
        kc = self._code(key)
        deadline = time.monotonic() + 5
        while (self.d.get_keyboard_control().auto_repeats[kc // 8] >> (kc % 8)) & 1:
            if time.monotonic() > deadline:
                pytest.fail(f"the app never switched off the auto-repeat of {key}", pytrace=False)
            time.sleep(0.005)  # polling the server's keyboard state: there is no event for it
        self.press(key)

    def release(self, *names: str) -> None:
        for n in reversed(names):
            xtest.fake_input(self.d, X.KeyRelease, self._code(n))
        self.d.sync()

    def close(self) -> None:
        self.d.close()


def cli_transcript(wav: Path, model: Path) -> str:
    """What `voxtral-desktop transcribe WAV --output-format json` prints (exact kernel)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "voxtral_desktop",
            "transcribe",
            str(wav),
            "--model",
            str(model),
            "--output-format",
            "json",
            "--kernel",
            "reference",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return str(json.loads(proc.stdout.splitlines()[0])["text"])


def as_a_qt_text_field_shows(text: str) -> str:
    """What a Qt text field shows when `text` is typed: Qt drops key events whose character is not
    printable (control characters, unassigned code points such as U+0C3B, which the random tiny
    model can produce) and turns Return into a line break. Everything else must arrive exactly."""
    out = []
    for ch in text:
        if ch in "\r\n":
            out.append("\n")
        elif ch == "\t" or unicodedata.category(ch) not in ("Cc", "Cn", "Cs"):
            out.append(ch)
    return "".join(out)


def history_rows(env: dict[str, str]) -> list[dict[str, Any]]:
    path = Path(env["XDG_DATA_HOME"]) / "voxtral-desktop" / "history.sqlite3"
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM utterances ORDER BY id")]
    finally:
        db.close()


def screenshot(env: dict[str, str], out: Path, title: str = "Voxtral Desktop") -> Path:
    """Grab the app's window; with VOXTRAL_UPDATE_SCREENSHOTS=1 also copy it into resources/."""
    proc = subprocess.run(
        [sys.executable, str(HERE / "grab_window.py"), title, str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and out.stat().st_size > 1000, proc.stderr
    if os.environ.get("VOXTRAL_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, SCREENSHOTS / out.name)
    return out
