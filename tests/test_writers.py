"""Output formats: exact SRT/VTT/JSON text for a known transcript, and atomic file writes."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from voxtral_desktop.config import N_LEFT_PAD_TOKENS, STREAMING_PAD_ID, STREAMING_WORD_ID, TOKEN_MS
from voxtral_desktop.engine import writers
from voxtral_desktop.engine.events import TimedToken
from voxtral_desktop.engine.transcribe import Transcript
from voxtral_desktop.engine.writers import (
    OutputError,
    dumps_json,
    format_json,
    format_srt,
    format_txt,
    format_vtt,
    srt_timestamp,
    vtt_timestamp,
    wrap_cue,
    write_outputs,
)
from voxtral_desktop.errors import VoxtralError

FIRST_STEP = 38  # first output step at the 480 ms delay


def make_transcript(
    items: list[str | int], *, language: str | None = None, duration_s: float = 2.0
) -> Transcript:
    """Tokens one per step from FIRST_STEP; ints are control ids, strings text ids 1000+i.
    At 480 ms, item i transcribes the speech [0.08 i, 0.08 (i + 1)] s."""
    tokens = []
    for i, item in enumerate(items):
        step = FIRST_STEP + i
        time_s = (step + 1 - N_LEFT_PAD_TOKENS) * TOKEN_MS / 1000
        if isinstance(item, int):
            tokens.append(TimedToken(item, step, time_s, ""))
        else:
            tokens.append(TimedToken(1000 + i, step, time_s, item))
    return Transcript(
        text="".join(t.text for t in tokens),
        tokens=tuple(tokens),
        delay_ms=480,
        duration_s=duration_s,
        language=language,
    )


P, W = STREAMING_PAD_ID, STREAMING_WORD_ID
# fmt: off
KNOWN = [
    P, W, " Hello", W, " world", ".", P, P,                               # 0.16 - 0.48
    W, " This", " line", " is", " long", " enough", " to", " need", " two",
    " lines", " when", " it", " is", " shown", " on", " screen", " &", " <", "3", "?", P,
]
# fmt: on

KNOWN_SRT = """\
1
00:00:00,160 --> 00:00:00,480
Hello world.

2
00:00:00,720 --> 00:00:02,000
This line is long enough to need two
lines when it is shown on screen & <3?
"""

KNOWN_VTT = """\
WEBVTT

00:00:00.160 --> 00:00:00.480
Hello world.

00:00:00.720 --> 00:00:02.000
This line is long enough to need two
lines when it is shown on screen &amp; &lt;3?
"""

KNOWN_TEXT = "Hello world. This line is long enough to need two lines when it is shown on screen & <3?"


@pytest.fixture
def known() -> Transcript:
    # The last tokens were decided during the flush: their times clamp to the 2.0 s of audio.
    return make_transcript(KNOWN, language="en", duration_s=2.0)


# ---- timestamps and wrapping ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("seconds", "srt", "vtt"),
    [
        (0.0, "00:00:00,000", "00:00:00.000"),
        (0.08, "00:00:00,080", "00:00:00.080"),
        (59.9996, "00:01:00,000", "00:01:00.000"),
        (3661.5, "01:01:01,500", "01:01:01.500"),
        (100 * 3600 + 0.001, "100:00:00,001", "100:00:00.001"),
    ],
)
def test_timestamps(seconds: float, srt: str, vtt: str) -> None:
    assert srt_timestamp(seconds) == srt
    assert vtt_timestamp(seconds) == vtt


def test_wrap_cue() -> None:
    assert wrap_cue("short line") == ["short line"]
    assert wrap_cue("x" * 42) == ["x" * 42]
    lines = wrap_cue("one two three four five six seven eight nine ten eleven twelve")
    assert len(lines) == 2 and all(len(line) <= 42 for line in lines)
    assert " ".join(lines) == "one two three four five six seven eight nine ten eleven twelve"
    assert wrap_cue("字" * 50) == ["字" * 25, "字" * 25]
    # Longer than two lines' worth: still two lines.
    assert len(wrap_cue(" ".join(["word"] * 40))) == 2


# ---- formats --------------------------------------------------------------------------------
def test_txt(known: Transcript) -> None:
    assert format_txt(known) == KNOWN_TEXT + "\n"
    assert format_txt(make_transcript([P, P, W])) == ""


def test_srt_exact(known: Transcript) -> None:
    assert format_srt(known) == KNOWN_SRT


def test_vtt_exact(known: Transcript) -> None:
    assert format_vtt(known) == KNOWN_VTT


def test_json(known: Transcript) -> None:
    obj = format_json(known)
    assert obj == {
        "text": KNOWN_TEXT,
        "language": "en",
        "delay_ms": 480,
        "duration_s": 2.0,
        "segments": [
            {"start": 0.16, "end": 0.48, "text": "Hello world."},
            {"start": 0.72, "end": 2.0, "text": KNOWN_TEXT.removeprefix("Hello world. ")},
        ],
        # Every id, pads and word markers included.
        "tokens": [t.id for t in known.tokens],
    }
    assert obj["tokens"][:3] == [P, W, 1002]
    text = dumps_json(obj)
    assert json.loads(text) == obj
    assert text.endswith("\n")
    # The token list stays on one line however long it is; the segments are indented.
    assert f'"tokens": {json.dumps(obj["tokens"])}' in text
    assert '\n    {\n      "start": 0.16,' in text


def test_json_omits_language_when_not_given() -> None:
    obj = format_json(make_transcript([P, " Hi", P]))
    assert "language" not in obj
    assert set(obj) == {"text", "delay_ms", "duration_s", "segments", "tokens"}


def test_silence_formats() -> None:
    silent = make_transcript([P] * 20)
    assert format_srt(silent) == ""
    assert format_vtt(silent) == "WEBVTT\n"
    assert format_json(silent)["segments"] == []
    assert format_json(silent)["text"] == ""
    assert format_json(silent)["tokens"] == [P] * 20


def test_non_ascii_is_written_as_is(tmp_path: Path) -> None:
    t = make_transcript([" Café", " 日本語", "。"])
    [path] = write_outputs(t, tmp_path / "x", ["json"])
    assert "Café 日本語。" in path.read_text(encoding="utf-8")


# ---- files ----------------------------------------------------------------------------------
def test_write_outputs(tmp_path: Path, known: Transcript) -> None:
    paths = write_outputs(known, tmp_path / "out" / "talk.v2", ["txt", "srt", "vtt", "json"])
    assert [p.name for p in paths] == ["talk.v2.txt", "talk.v2.srt", "talk.v2.vtt", "talk.v2.json"]
    assert paths[0].read_text(encoding="utf-8") == KNOWN_TEXT + "\n"
    assert paths[1].read_bytes() == KNOWN_SRT.encode()  # '\n' line ends on every OS
    assert paths[2].read_bytes() == KNOWN_VTT.encode()
    assert json.loads(paths[3].read_text(encoding="utf-8")) == format_json(known)
    assert sorted(os.listdir(tmp_path / "out")) == sorted(p.name for p in paths)  # no temp files


def test_write_outputs_rejects_unknown_formats(tmp_path: Path, known: Transcript) -> None:
    with pytest.raises(ValueError, match="docx"):
        write_outputs(known, tmp_path / "x", ["txt", "docx"])
    assert not list(tmp_path.iterdir())


def test_disk_full_leaves_no_partial_file(
    tmp_path: Path, known: Transcript, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "talk.srt"
    target.write_text("previous version\n", encoding="utf-8")

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(writers.os, "fsync", disk_full)
    with pytest.raises(OutputError) as err:
        write_outputs(known, tmp_path / "talk", ["srt"])
    message = str(err.value)
    assert isinstance(err.value, VoxtralError) and err.value.exit_code != 0
    assert "\n" not in message and str(target) in message and os.strerror(errno.ENOSPC) in message
    # The old file is untouched and no temporary file is left behind.
    assert target.read_text(encoding="utf-8") == "previous version\n"
    assert os.listdir(tmp_path) == ["talk.srt"]


def test_output_folder_that_is_a_file(tmp_path: Path, known: Transcript) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    with pytest.raises(OutputError, match="cannot"):
        write_outputs(known, blocker / "talk", ["txt"])
