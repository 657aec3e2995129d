"""End to end through a PulseAudio virtual microphone (a null sink's monitor): the app captures
with sounddevice at the device's own rate, resamples to 16 kHz, types what it recognises into
another window; that text must equal `voxtral-desktop transcribe` of the audio it captured.

Nothing is skipped: without pulseaudio or Xvfb the fixtures fail. About 12-18 s on the 2-core CI
machine (PulseAudio start, the app, real-time playback).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from apprun import (
    AppProcess,
    Keyboard,
    as_a_qt_text_field_shows,
    cli_transcript,
    history_rows,
    session_env,
)
from xsession import Receiver, stop_process

from voxtral_desktop.audio.decode import load_audio


@pytest.fixture
def pulse_env(xvfb: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    exe, pactl = shutil.which("pulseaudio"), shutil.which("pactl")
    if exe is None or pactl is None or shutil.which("paplay") is None:
        pytest.fail("pulseaudio/pactl/paplay are not installed (run .ci/ui-deps.sh)", pytrace=False)
    env = session_env(xvfb, tmp_path)
    env["HOME"] = str(tmp_path / "home")
    Path(env["HOME"]).mkdir()
    log = (tmp_path / "pulse.log").open("wb")
    proc = subprocess.Popen(
        [
            exe,
            "-n",
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--disallow-exit",
            "--log-target=stderr",
            "-L",
            "module-native-protocol-unix auth-anonymous=1",
            "-L",
            "module-null-sink sink_name=vmic_sink rate=16000 channels=1",
            "-L",
            "module-remap-source master=vmic_sink.monitor source_name=vmic",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    deadline = time.monotonic() + 20
    while subprocess.run([pactl, "info"], env=env, capture_output=True).returncode != 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            tail = (tmp_path / "pulse.log").read_text(errors="replace")[-2000:]
            pytest.fail(f"PulseAudio did not start: {tail}", pytrace=False)
        time.sleep(0.1)  # polling a daemon's socket: there is no event to wait on
    for args in (["set-default-source", "vmic"], ["set-default-sink", "vmic_sink"]):
        subprocess.run([pactl, *args], env=env, check=True)
    try:
        yield env
    finally:
        stop_process(proc)
        log.close()


def test_dictation_through_a_virtual_microphone(
    xvfb: str, tmp_path: Path, tiny_model: Path, speech_wav: Path, pulse_env: dict[str, str]
) -> None:
    env = pulse_env
    saved = tmp_path / "utterances"
    args = ["--model", str(tiny_model), "--kernel", "reference", "--device", "cpu"]
    app = AppProcess([*args, "--hotkey", "F9", "--save-audio", str(saved)], env)
    app.wait_log("model ready")
    opened = app.wait_log("microphone ")  # "microphone default open at 44100 Hz"
    assert "open at" in opened
    app.wait_log("XTEST injector ready")
    receiver = Receiver(xvfb, env)
    keys = Keyboard(xvfb)
    try:
        keys.press("F9")
        app.wait_log("recording utterance 1")
        subprocess.run(["paplay", "--device=vmic_sink", str(speech_wav)], env=env, check=True, timeout=60)
        keys.release("F9")
        app.wait_log("utterance 1 ended")
        captured = saved / "utterance-1.wav"
        app.wait_log("saved the utterance's audio")

        reference = cli_transcript(captured, tiny_model)
        assert reference, "the model recognised nothing in the captured audio"
        shown = as_a_qt_text_field_shows(reference)
        assert receiver.wait_for(shown) == shown
        assert history_rows(env)[0]["text"] == reference

        # The speech really came through the virtual microphone, resampled back to 16 kHz.
        got, sent = load_audio(captured), load_audio(speech_wav)
        assert got.size > sent.size
        corr = np.correlate(got, sent, mode="valid")  # [got - sent + 1]
        lag = int(np.argmax(corr))
        aligned = got[lag : lag + sent.size]
        gain = float(np.dot(aligned, sent) / np.dot(sent, sent))
        similarity = float(np.dot(aligned, sent) / (np.linalg.norm(aligned) * np.linalg.norm(sent)))
        # Measured over runs: gain 0.98-0.99, similarity 0.987-0.997 (two resamplers, 16 -> 44.1
        # -> 16 kHz, band-limit this test signal's white noise near 8 kHz).
        assert 0.9 < gain < 1.1 and similarity > 0.95, (gain, similarity)
    finally:
        keys.close()
        receiver.close()
        assert app.stop() == 0
