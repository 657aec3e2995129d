"""The worker with the real engine on the tiny synthetic model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pytestqt.qtbot import QtBot
from test_ui_worker import TIMEOUT_MS, Harness, _begin

from voxtral_desktop.platform.audio_capture import FileMicrophone
from voxtral_desktop.ui.events import ModelStatus, UtteranceEnded
from voxtral_desktop.ui.worker import load_real_engine

LOAD_TIMEOUT_MS = 60_000  # the first load imports torch


@pytest.fixture
def real_harness(qtbot: QtBot) -> Iterator[Harness]:
    h = Harness(None, load_real_engine)
    yield h
    h.stop()


def test_file_microphone_utterance_equals_file_transcription(
    qtbot: QtBot, real_harness: Harness, tiny_model: Path, speech_case: tuple[Path, str]
) -> None:
    from voxtral_desktop.engine.engine import Engine
    from voxtral_desktop.engine.transcribe import transcribe_file

    speech_wav = speech_case[0]
    h = real_harness
    mic = FileMicrophone(speech_wav, speed=4.0)  # four times real time keeps the test short
    with qtbot.waitSignal(h.events.audio_status, timeout=TIMEOUT_MS):
        h.driver.source.emit(mic)
    with qtbot.waitSignal(
        h.events.model_state,
        timeout=LOAD_TIMEOUT_MS,
        check_params_cb=lambda s: s.status is not ModelStatus.LOADING,
    ) as state:
        h.driver.load.emit(str(tiny_model), "cpu", "reference", 0)
    assert state.args[0].status is ModelStatus.READY, state.args[0].message
    _begin(qtbot, h, 1)
    assert mic.finished.wait(30)
    with qtbot.waitSignal(h.events.utterance_ended, timeout=LOAD_TIMEOUT_MS) as ended:
        h.driver.end.emit()
    result: UtteranceEnded = ended.args[0]

    reference = transcribe_file(
        Engine.load(tiny_model, device="cpu", kernel="reference").session(), speech_wav
    ).text
    assert result.text == reference
    assert not reference.isascii()  # the streamed text carries non-ASCII characters
    assert len(h.deltas) > 2  # it arrived in pieces while "speaking", not all at the end
    assert abs(result.duration_s - mic.duration_s) < 1e-6


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        (b"GGUF" + bytes(60), "GGUF"),
        (b"\x00" * 100, "not a"),
    ],
    ids=["missing", "corrupt-gguf", "not-a-model"],
)
def test_missing_or_corrupt_model_is_one_clear_line(
    qtbot: QtBot, real_harness: Harness, tmp_path: Path, content: bytes | None, expected: str
) -> None:
    path = tmp_path / "model.gguf"
    if content is not None:
        path.write_bytes(content)
    with qtbot.waitSignal(
        real_harness.events.model_state,
        timeout=LOAD_TIMEOUT_MS,
        check_params_cb=lambda s: s.status is ModelStatus.FAILED,
    ) as state:
        real_harness.driver.load.emit(str(path), "cpu", "auto", 0)
    message = state.args[0].message
    assert ("\n" not in message and str(path) in message) or expected in message, message
    assert expected.lower() in message.lower(), message


def test_silence_between_utterances_reuses_one_session(
    qtbot: QtBot, real_harness: Harness, tiny_model: Path, speech_wav: Path
) -> None:
    """Two utterances in a row give the same text for the same audio (the reset is complete)."""
    h = real_harness
    mic = FileMicrophone(speech_wav, speed=float("inf"))
    with qtbot.waitSignal(h.events.audio_status, timeout=TIMEOUT_MS):
        h.driver.source.emit(mic)
    with qtbot.waitSignal(
        h.events.model_state, timeout=LOAD_TIMEOUT_MS, check_params_cb=lambda s: s.status is ModelStatus.READY
    ):
        h.driver.load.emit(str(tiny_model), "cpu", "reference", 0)
    texts = []
    for uid in (1, 2):
        _begin(qtbot, h, uid)
        assert mic.finished.wait(30)
        with qtbot.waitSignal(h.events.utterance_ended, timeout=LOAD_TIMEOUT_MS) as ended:
            h.driver.end.emit()
        texts.append(ended.args[0].text)
    assert texts[0] == texts[1] and texts[0]
    assert np.isfinite(ended.args[0].duration_s)
