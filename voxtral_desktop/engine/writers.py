"""Transcript output formats (txt, srt, vtt, json) and atomic file writing.

Every formatter takes a `Transcript` and returns text (JSON: a plain dict); `write_outputs`
writes each format next to a stem path through a temporary file and a rename, so a full disk or
a killed process never leaves a truncated subtitle file behind.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from voxtral_desktop.engine.segments import Segment, build_segments
from voxtral_desktop.errors import VoxtralError

if TYPE_CHECKING:  # transcribe.py pulls in torch and PyAV; formatting needs neither
    from voxtral_desktop.engine.transcribe import Transcript

__all__ = [
    "FORMATS",
    "OutputError",
    "dumps_json",
    "format_json",
    "format_srt",
    "format_txt",
    "format_vtt",
    "render",
    "transcript_segments",
    "write_outputs",
    "write_txt",
]

log = logging.getLogger(__name__)

FORMATS = ("txt", "srt", "vtt", "json")
LINE_WIDTH = 42  # the usual subtitle line length; a cue of up to 84 characters fits 2 lines


class OutputError(VoxtralError):
    """An output file could not be written (disk full, permission denied, ...)."""


# ---- segments -------------------------------------------------------------------------------
def transcript_segments(transcript: Transcript) -> list[Segment]:
    return build_segments(transcript.tokens, transcript.delay_ms, duration_s=transcript.duration_s)


# ---- timestamps -----------------------------------------------------------------------------
def _timestamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{ms:03d}"


def srt_timestamp(seconds: float) -> str:
    """HH:MM:SS,mmm (SubRip uses a comma)."""
    return _timestamp(seconds, ",")


def vtt_timestamp(seconds: float) -> str:
    """HH:MM:SS.mmm (WebVTT uses a dot; the hours are optional, we always write them)."""
    return _timestamp(seconds, ".")


# ---- line wrapping --------------------------------------------------------------------------
def wrap_cue(text: str, width: int = LINE_WIDTH) -> list[str]:
    """At most two lines: one if it fits, else split at the space that balances the lines best.

    Text with no spaces (CJK) splits at its middle character. A cue longer than two lines'
    worth keeps two longer lines rather than a third one: players show two lines best.
    """
    if len(text) <= width:
        return [text]
    spaces = [i for i, ch in enumerate(text) if ch == " "]
    if spaces:
        cut = min(spaces, key=lambda i: (max(i, len(text) - i - 1), abs(len(text) / 2 - i)))
        return [text[:cut], text[cut + 1 :]]
    middle = (len(text) + 1) // 2
    return [text[:middle], text[middle:]]


# ---- formats --------------------------------------------------------------------------------
def format_txt(transcript: Transcript) -> str:
    """The plain text, one trailing newline (empty for silence)."""
    text = transcript.text.strip()
    return f"{text}\n" if text else ""


def format_srt(transcript: Transcript, segments: Sequence[Segment] | None = None) -> str:
    if segments is None:
        segments = transcript_segments(transcript)
    cues = [
        f"{i}\n{srt_timestamp(s.start)} --> {srt_timestamp(s.end)}\n" + "\n".join(wrap_cue(s.text)) + "\n"
        for i, s in enumerate(segments, start=1)
    ]
    return "\n".join(cues)


def _vtt_escape(text: str) -> str:
    # WebVTT cue text is markup: '&' and '<' must be escaped, and "-->" may not appear. '>' is
    # legal as is; nothing else needs escaping.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("-->", "--&gt;")


def format_vtt(transcript: Transcript, segments: Sequence[Segment] | None = None) -> str:
    if segments is None:
        segments = transcript_segments(transcript)
    cues = [
        f"\n{vtt_timestamp(s.start)} --> {vtt_timestamp(s.end)}\n"
        + "\n".join(_vtt_escape(line) for line in wrap_cue(s.text))  # wrap what the viewer sees
        + "\n"
        for s in segments
    ]
    return "WEBVTT\n" + "".join(cues)


def format_json(transcript: Transcript, segments: Sequence[Segment] | None = None) -> dict[str, Any]:
    if segments is None:
        segments = transcript_segments(transcript)
    out: dict[str, Any] = {"text": transcript.text.strip()}
    if transcript.language is not None:
        out["language"] = transcript.language
    out.update(
        delay_ms=transcript.delay_ms,
        duration_s=round(transcript.duration_s, 3),
        segments=[{"start": s.start, "end": s.end, "text": s.text} for s in segments],
        # Every id after the prompt: pads and word markers carry the timing, so keep them.
        tokens=[t.id for t in transcript.tokens],
    )
    return out


def dumps_json(obj: dict[str, Any], *, indent: int | None = 2) -> str:
    """JSON text; with `indent`, the (long) `tokens` list still stays on one line."""
    if indent is None:
        return json.dumps(obj, ensure_ascii=False)
    if "tokens" not in obj:
        return json.dumps(obj, ensure_ascii=False, indent=indent) + "\n"
    marker = "\x00tokens\x00"  # cannot occur in json.dumps output (it escapes control characters)
    text = json.dumps({**obj, "tokens": marker}, ensure_ascii=False, indent=indent)
    return text.replace(json.dumps(marker), json.dumps(obj["tokens"]), 1) + "\n"


def render(transcript: Transcript, fmt: str, segments: Sequence[Segment] | None = None) -> str:
    """The file contents of one format."""
    if fmt == "txt":
        return format_txt(transcript)
    if segments is None:
        segments = transcript_segments(transcript)
    if fmt == "srt":
        return format_srt(transcript, segments)
    if fmt == "vtt":
        return format_vtt(transcript, segments)
    if fmt == "json":
        return dumps_json(format_json(transcript, segments))
    raise ValueError(f"unknown output format {fmt!r}")


# ---- files ----------------------------------------------------------------------------------
def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def write_atomic(path: Path, text: str) -> None:
    """Write UTF-8 text with '\\n' line ends via a temporary file in the same folder + rename."""
    data = text.encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create folder {path.parent}: {_reason(exc)}") from None
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {_reason(exc)}") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                log.warning("could not remove temporary file %s", tmp)


def write_txt(transcript: Transcript, path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    write_atomic(p, format_txt(transcript))
    return p


def output_path(stem_path: str | os.PathLike[str], fmt: str) -> Path:
    # Appended, not `with_suffix`: a stem such as "talk.v2" must keep its dot.
    stem = Path(stem_path)
    return stem.with_name(f"{stem.name}.{fmt}")


def write_outputs(
    transcript: Transcript, stem_path: str | os.PathLike[str], formats: Iterable[str]
) -> list[Path]:
    """Write `stem_path.<fmt>` for each format; returns the paths written, in order."""
    formats = list(formats)
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"unknown output format {fmt!r}")
    segments = transcript_segments(transcript) if any(f != "txt" for f in formats) else None
    written = []
    for fmt in formats:
        path = output_path(stem_path, fmt)
        write_atomic(path, render(transcript, fmt, segments))
        written.append(path)
    return written
