"""Helpers for tests that need a real X server (Xvfb), XTEST and a receiving window.

Nothing here skips: if Xvfb is missing or does not start, the fixture using it FAILS with the
reason, because a silently skipped end-to-end test proves nothing.
"""

from __future__ import annotations

import json
import os
import queue
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
RECEIVER = HERE / "receiver_app.py"
SCREEN = "1280x800x24"
# Short auto-repeat so a test holding a key for half a second sees a dozen repeats.
AR_DELAY_MS, AR_INTERVAL_MS = 150, 20


def start_xvfb(timeout_s: float = 15.0) -> tuple[subprocess.Popen[bytes], str]:
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.fail("Xvfb is not installed (run .ci/ui-deps.sh); the X11 tests cannot run", pytrace=False)
    read_fd, write_fd = os.pipe()
    log = open(os.path.join(tempfile.mkdtemp(prefix="xvfb-"), "xvfb.log"), "wb")
    proc = subprocess.Popen(
        [
            exe,
            "-displayfd",
            str(write_fd),
            "-screen",
            "0",
            SCREEN,
            "-nolisten",
            "tcp",
            # Without -noreset the server resets whenever its last client disconnects, and a test
            # connecting during that reset gets "Connection reset by peer".
            "-noreset",
            "-ardelay",
            str(AR_DELAY_MS),
            "-arinterval",
            str(AR_INTERVAL_MS),
        ],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    log.close()
    proc.log_path = log.name  # type: ignore[attr-defined]
    os.close(write_fd)
    number = b""
    deadline = time.monotonic() + timeout_s
    while not number.endswith(b"\n") and time.monotonic() < deadline:
        ready, _, _ = select.select([read_fd], [], [], 0.2)
        if ready:
            chunk = os.read(read_fd, 16)
            if not chunk:
                break
            number += chunk
    os.close(read_fd)
    if not number.strip():
        proc.kill()
        err = open(proc.log_path, "rb").read().decode(errors="replace")[-2000:]  # type: ignore[attr-defined]
        pytest.fail(f"Xvfb did not start: {err or 'no display number within the timeout'}", pytrace=False)
    return proc, f":{number.decode().strip()}"


def stop_process(proc: subprocess.Popen[bytes] | subprocess.Popen[str], timeout_s: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Receiver:
    """The receiving app in a subprocess; `text` is its latest content."""

    def __init__(self, display: str, env: dict[str, str] | None = None) -> None:
        full_env = dict(env or os.environ)
        full_env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb")
        self.proc = subprocess.Popen(
            [sys.executable, str(RECEIVER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=full_env,
            text=True,
            encoding="utf-8",
        )
        self.text = ""
        self.window_id = 0
        # A thread reads the pipe: select() on it misses lines already in Python's buffer.
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        line = self._line(20.0)
        if not line.startswith("READY"):
            stop_process(self.proc)
            pytest.fail(f"the receiver app did not start (got {line!r})", pytrace=False)
        self.window_id = int(line.split()[1])

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put("")  # EOF

    def _line(self, timeout_s: float) -> str:
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            return ""
        if line == "":
            self._lines.put("")  # keep reporting EOF
        return line

    def focus(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("focus\n")
        self.proc.stdin.flush()
        while True:
            line = self._line(10.0)
            if not line:
                pytest.fail("the receiver did not take focus", pytrace=False)
            if line.startswith("READY"):
                return
            self.text = json.loads(line)

    def wait_for(self, expected: str, timeout_s: float = 30.0) -> str:
        """Read text updates until the text equals `expected` or the timeout passes."""
        return self.wait_until(lambda text: text == expected, timeout_s)

    def wait_until(self, done: Callable[[str], bool], timeout_s: float = 30.0) -> str:
        """Read text updates until `done(text)` or the timeout passes; returns the text."""
        deadline = time.monotonic() + timeout_s
        while not done(self.text) and time.monotonic() < deadline:
            line = self._line(min(2.0, max(0.05, deadline - time.monotonic())))
            if line.startswith('"'):
                self.text = json.loads(line)
            elif line == "" and self.proc.poll() is not None:
                break
        return self.text

    def _command(self, line: str, answer: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        while True:
            got = self._line(10.0)
            if not got:
                pytest.fail(f"the receiver did not answer {line.split()[0]!r}", pytrace=False)
            if got.startswith(answer):
                return got[len(answer) :].strip()
            if got.startswith('"'):
                self.text = json.loads(got)

    def set_clipboard(self, formats: dict[str, str]) -> None:
        """The user copies something (several formats) in this app."""
        self._command("setclip " + json.dumps(formats), "CLIPSET")

    def clipboard(self) -> dict[str, str]:
        """The clipboard's data formats as this app sees them (X11 protocol targets left out)."""
        meta = {"TARGETS", "MULTIPLE", "TIMESTAMP", "SAVE_TARGETS"}
        return {k: v for k, v in json.loads(self._command("clip", "CLIP ")).items() if k not in meta}

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(5)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                pass
        stop_process(self.proc)


def xvfb_fixture() -> Iterator[str]:
    proc, display = start_xvfb()
    try:
        yield display
    finally:
        crashed = proc.poll() is not None
        stop_process(proc)
        if crashed:
            log = open(proc.log_path, "rb").read().decode(errors="replace")[-3000:]  # type: ignore[attr-defined]
            pytest.fail(f"Xvfb died during the tests; its log:\n{log}", pytrace=False)
