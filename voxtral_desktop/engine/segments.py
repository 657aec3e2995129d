"""Subtitle segments from the timed token stream of a transcript.

The model has no timestamp tokens, but every output step covers a known 80 ms of audio: a text
token emitted at step p finishes at `time_s` and transcribes speech about one delay earlier.
That gives each text token a speech span of `[time_s - delay - 80 ms, time_s - delay]`, and the
stream itself says where the speaker paused (runs of [STREAMING_PAD]) and where words begin
(a leading space, or a [STREAMING_WORD] marker).

Segments break at sentence ends, at pauses, and before they would grow past `max_chars` or
`max_duration`; they only break between words, so numbers like "3.5" stay whole. All times are
computed in integer milliseconds so that the writers' ms timestamps are exact and monotonic.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from voxtral_desktop.config import N_SPECIAL_TOKENS, STREAMING_WORD_ID, TOKEN_MS
from voxtral_desktop.engine.events import TimedToken

__all__ = ["Segment", "build_segments"]

# Sentence terminators. The ASCII/Latin ones only end a sentence at a word boundary ("3.5",
# "e.g." mid-word stay whole); the full-width CJK ones end it even without a boundary, because
# CJK text has no spaces.
_SENTENCE_END = frozenset(".?!…。？！")
_CJK_SENTENCE_END = frozenset("。？！")
# Closing quotes and brackets may follow the terminator: 'He said "stop." Then'.
_CLOSERS = "\"'”’»)]」』"


@dataclass(frozen=True)
class Segment:
    """One subtitle cue: `start < end` in seconds (whole milliseconds) and non-empty text."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class _Piece:
    """The text of one token (or of a run of tokens completing one character) with its span."""

    text: str
    start_ms: int
    end_ms: int


@dataclass
class _Word:
    pieces: list[_Piece]
    pause_before: bool  # a long run of [STREAMING_PAD] came right before it

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.pieces)

    @property
    def start_ms(self) -> int:
        return self.pieces[0].start_ms

    @property
    def end_ms(self) -> int:
        return self.pieces[-1].end_ms


def _normalise(text: str) -> str:
    # Newlines inside a cue would end it early in SRT/VTT; runs of whitespace collapse to one
    # space (text without spaces, such as CJK, is untouched).
    return " ".join(text.split())


def _ends_sentence(text: str) -> bool:
    stripped = text.rstrip().rstrip(_CLOSERS)
    return bool(stripped) and stripped[-1] in _SENTENCE_END


def _ends_sentence_cjk(text: str) -> bool:
    stripped = text.rstrip().rstrip(_CLOSERS)
    return bool(stripped) and stripped[-1] in _CJK_SENTENCE_END


def _words(
    tokens: Iterable[TimedToken], delay_ms: int, pause_s: float, duration_ms: int | None
) -> list[_Word]:
    """Group text tokens into words; control tokens only mark boundaries and pauses."""
    words: list[_Word] = []
    silent = 0  # steps with nothing new ([STREAMING_PAD]) since the last text token
    marker = False  # a [STREAMING_WORD] since the last text token
    pending_start: int | None = None  # a text id whose character is not complete yet
    prev_text = ""

    def clamp(ms: int) -> int:
        ms = max(0, ms)
        return ms if duration_ms is None else min(ms, duration_ms)

    for tok in tokens:
        end = round(tok.time_s * 1000) - delay_ms
        start = end - TOKEN_MS
        # Text first, whatever the id: the session appends the detokenizer's flushed tail to the
        # last token of a stream, which may be a control token.
        if not tok.text:
            if tok.id == STREAMING_WORD_ID:
                marker = True
            elif tok.id >= N_SPECIAL_TOKENS:
                # A text id that ended mid-character: its speech belongs to that character.
                if pending_start is None:
                    pending_start = start
            else:
                # [STREAMING_PAD]; any other control id (which a trained model does not emit)
                # says nothing new either.
                silent += 1
            continue
        if pending_start is not None:
            start, pending_start = pending_start, None
        piece = _Piece(tok.text, clamp(start), clamp(end))
        pause = silent * TOKEN_MS > pause_s * 1000
        # A long pause is a boundary even inside a "word": with no spaces (CJK) and no marker it
        # is the only hint there is, and a speaker silent for most of a second has ended a phrase.
        new_word = not words or marker or pause or tok.text[0].isspace() or _ends_sentence_cjk(prev_text)
        if new_word:
            words.append(_Word([piece], pause_before=pause and bool(words)))
        else:
            words[-1].pieces.append(piece)
        silent, marker, prev_text = 0, False, tok.text
    return words


def _split_long_word(word: _Word, max_chars: int, max_duration_ms: int) -> list[_Word]:
    """A "word" too long for a whole cue (unspaced text with no markers) splits between tokens."""
    if len(_normalise(word.text)) <= max_chars and word.end_ms - word.start_ms <= max_duration_ms:
        return [word]
    out: list[_Word] = []
    current: list[_Piece] = []
    for piece in word.pieces:
        if current and (
            len(_normalise("".join(p.text for p in [*current, piece]))) > max_chars
            or piece.end_ms - current[0].start_ms > max_duration_ms
        ):
            out.append(_Word(current, pause_before=not out and word.pause_before))
            current = []
        current.append(piece)
    out.append(_Word(current, pause_before=not out and word.pause_before))
    return out


def build_segments(
    tokens: Sequence[TimedToken],
    delay_ms: int,
    *,
    max_chars: int = 84,
    max_duration: float = 7.0,
    pause_s: float = 0.8,
    duration_s: float | None = None,
) -> list[Segment]:
    """Subtitle segments of a transcript's tokens (pads and word markers included).

    `delay_ms` is the stream's transcription delay; `duration_s`, when given, clamps every time
    to the audio (text emitted while the stream was being flushed lies in its padding).
    """
    # Floored, so no cue ends after the audio does.
    duration_ms = None if duration_s is None else max(0, math.floor(duration_s * 1000 + 1e-6))
    max_duration_ms = round(max_duration * 1000)
    words = [
        w
        for word in _words(tokens, delay_ms, pause_s, duration_ms)
        for w in _split_long_word(word, max_chars, max_duration_ms)
    ]

    groups: list[list[_Word]] = []
    for word in words:
        if groups:
            current = groups[-1]
            text = "".join(w.text for w in current)
            if (
                word.pause_before
                or _ends_sentence(text)
                or len(_normalise(text + word.text)) > max_chars
                or word.end_ms - current[0].start_ms > max_duration_ms
            ):
                groups.append([word])
            else:
                current.append(word)
        else:
            groups.append([word])

    return _finalise(groups, duration_ms)


def _finalise(groups: list[list[_Word]], duration_ms: int | None) -> list[Segment]:
    """Make the cues strictly increasing: start < end, and no cue starts before the last ends."""
    cues: list[tuple[int, int, str]] = []
    for group in groups:
        text = _normalise("".join(w.text for w in group))
        if not text:
            continue  # whitespace-only output (a lone newline token) is no cue
        start, end = group[0].start_ms, group[-1].end_ms
        if cues:
            start = max(start, cues[-1][1])
        end = max(end, start + TOKEN_MS)  # at least one token long
        if duration_ms is not None and end > duration_ms:
            end = duration_ms
            start = min(start, end - TOKEN_MS)
            if cues:
                start = max(start, cues[-1][1])
        if end <= start:
            # Squeezed against the end of the audio: it joins the cue before it.
            if cues:
                s, e, t = cues[-1]
                cues[-1] = (s, e, f"{t} {text}")
                continue
            start, end = 0, max(end, 1)
        cues.append((max(0, start), end, text))
    return [Segment(start=s / 1000, end=e / 1000, text=t) for s, e, t in cues]
