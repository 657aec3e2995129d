"""End to end under Xvfb: the real app (tiny model, `--input-file`), push-to-talk pressed with
XTEST, text typed into another application's window, compared with `voxtral-desktop transcribe`.

Nothing here is skipped: without Xvfb the `xvfb` fixture fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from apprun import (
    AppProcess,
    Keyboard,
    as_a_qt_text_field_shows,
    cli_transcript,
    history_rows,
    screenshot,
    session_env,
)
from xsession import Receiver


# Each test that starts the app takes 6-12 s on the 2-core CI machine (torch import, model load),
# under the 20 s that would make it `slow`.
def _start(env: dict[str, str], *args: str) -> AppProcess:
    app = AppProcess(list(args), env)
    app.wait_log("model ready")
    app.wait_log("XTEST injector ready")
    return app


def test_dictation_into_another_window_equals_file_transcription(
    xvfb: str, tmp_path: Path, tiny_model: Path, speech_case: tuple[Path, str]
) -> None:
    wav, in_process = speech_case
    reference = cli_transcript(wav, tiny_model)
    assert reference == in_process and not reference.isascii()
    env = session_env(xvfb, tmp_path)
    app = _start(
        env,
        "--model",
        str(tiny_model),
        "--kernel",
        "reference",
        "--device",
        "cpu",
        "--input-file",
        str(wav),
        "--hotkey",
        "ctrl+alt+space",
    )
    app.wait_log("push-to-talk key ctrl+alt+space grabbed")
    receiver = Receiver(xvfb, env)  # starts after the app, so it has the focus
    keys = Keyboard(xvfb)
    try:
        keys.press_combo("Control_L", "Alt_L", "space")  # held, with the modifiers, while "speaking"
        app.wait_log("recording utterance 1")
        app.wait_log("played to the end")
        keys.release("Control_L", "Alt_L", "space")
        app.wait_log("utterance 1 ended")
        shown = as_a_qt_text_field_shows(reference)
        assert shown == reference  # this audio's transcript has nothing a text field would drop
        assert receiver.wait_for(shown) == shown
        rows = history_rows(env)
        assert len(rows) == 1
        assert rows[0]["text"] == reference and rows[0]["status"] == "done"
        assert rows[0]["window"] == "receiver" and rows[0]["duration_s"] == pytest.approx(
            wav.stat().st_size / 2 / 16000, abs=0.01
        )
        screenshot(env, tmp_path / "main-window.png")
    finally:
        keys.close()
        receiver.close()
        assert app.stop() == 0


def test_clipboard_paste_method_restores_the_users_clipboard(
    xvfb: str, tmp_path: Path, tiny_model: Path, speech_case: tuple[Path, str]
) -> None:
    wav, reference = speech_case
    env = session_env(xvfb, tmp_path)
    app = _start(
        env,
        "--model",
        str(tiny_model),
        "--kernel",
        "reference",
        "--device",
        "cpu",
        "--input-file",
        str(wav),
        "--hotkey",
        "F9",
        "--typing",
        "clipboard",
    )
    receiver = Receiver(xvfb, env)
    users_clipboard = {"text/plain": "the user's own clip ✓", "application/x-voxtral-test": "not text at all"}
    receiver.set_clipboard(users_clipboard)
    keys = Keyboard(xvfb)
    try:
        keys.press("F9")
        app.wait_log("recording utterance 1")
        app.wait_log("played to the end")
        keys.release("F9")
        app.wait_log("utterance 1 ended")
        assert receiver.wait_for(reference) == reference  # pasted, piece by piece
        app.wait_log("restored the clipboard")
        # Each burst of pastes ends with a restore; the last one comes after the last paste.
        deadline = time.monotonic() + 10
        while (now := receiver.clipboard()) != users_clipboard and time.monotonic() < deadline:
            time.sleep(0.1)  # polling another process's clipboard: there is no event to wait on
        assert now == users_clipboard  # every format came back
    finally:
        keys.close()
        receiver.close()
        assert app.stop() == 0


def test_target_window_closing_while_typing_keeps_the_text(
    xvfb: str, tmp_path: Path, tiny_model: Path, speech_case: tuple[Path, str]
) -> None:
    wav, reference = speech_case
    env = session_env(xvfb, tmp_path)
    app = _start(
        env,
        "--model",
        str(tiny_model),
        "--kernel",
        "reference",
        "--device",
        "cpu",
        "--input-file",
        str(wav),
        "--hotkey",
        "F9",
    )
    receiver = Receiver(xvfb, env)
    keys = Keyboard(xvfb)
    try:
        keys.press("F9")
        app.wait_log("recording utterance 1")
        assert receiver.wait_until(bool), "no text reached the receiver"
        receiver.close()  # the user closes the window being typed into
        app.wait_log("played to the end")
        keys.release("F9")
        app.wait_log("utterance 1 ended")
        app.wait_log("utterance 1 not delivered")
        rows = history_rows(env)
        assert rows[0]["text"] == reference  # nothing lost
        assert rows[0]["status"] == "not-delivered" and "closed" in rows[0]["note"]
        screenshot(env, tmp_path / "typing-stopped.png")
    finally:
        keys.close()
        assert app.stop() == 0


def test_hotkey_taken_and_corrupt_model_are_shown_not_crashed(xvfb: str, tmp_path: Path) -> None:
    from Xlib import XK, X, display

    other = display.Display(xvfb)  # another app holds F10
    kc = other.keysym_to_keycode(XK.string_to_keysym("F10"))
    other.screen().root.grab_key(kc, X.AnyModifier, True, X.GrabModeAsync, X.GrabModeAsync)
    other.sync()
    bad_model = tmp_path / "broken.gguf"
    bad_model.write_bytes(b"GGUF" + os.urandom(200))
    env = session_env(xvfb, tmp_path)
    app = AppProcess(["--model", str(bad_model), "--hotkey", "F10", "--input-file", str(bad_model)], env)
    try:
        line = app.wait_log("push-to-talk key unavailable")
        assert "F10 is already used as a global shortcut by another application" in line
        assert "model failed" in app.wait_log("model failed")
        app.wait_log("cannot use the input file")
        screenshot(env, tmp_path / "problems.png")
        assert app.proc.poll() is None  # still running
    finally:
        other.close()
        assert app.stop() == 0


def test_screenshot_of_the_main_window_after_dictation(xvfb: str, tmp_path: Path) -> None:
    """The window with readable words (a scripted engine) for the README, rendered on Xvfb."""
    from apprun import HERE, SCREENSHOTS

    env = session_env(xvfb, tmp_path)
    out = tmp_path / "main-window-demo.png"
    proc = subprocess.run(
        [sys.executable, str(HERE / "demo_window.py"), str(out)],
        env=env,
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert out.stat().st_size > 10_000
    if os.environ.get("VOXTRAL_UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        out.replace(SCREENSHOTS / out.name)


def test_second_launch_hands_over_to_the_first(
    xvfb: str, tmp_path: Path, tiny_model: Path, speech_wav: Path
) -> None:
    env = session_env(xvfb, tmp_path)
    app = _start(env, "--model", str(tiny_model), "--hotkey", "F11", "--input-file", str(speech_wav))
    try:
        second = AppProcess(["--toggle"], env)
        assert second.proc.wait(60) == 0
        app.wait_log("recording utterance 1")  # --toggle started dictation in the first app
        second = AppProcess(["--toggle"], env)
        assert second.proc.wait(60) == 0
        app.wait_log("utterance 1 ended")
    finally:
        assert app.stop() == 0  # SIGTERM: a clean exit
