"""Long files as a batch of segments: cut at pauses, decode the pieces side by side.

One stream decodes one 80 ms position after another, so on a GPU a long file costs
(positions x per-step latency) however fast the matmuls are. Cut into segments at quiet spots,
the same file becomes a batch of independent streams that `BatchDecoder` runs in lockstep: B
positions per step for about the price of one.

The price: every segment is a fresh stream (its own left pad and prompt, no memory of the text
before it), so words right at a cut can come out differently from one stream over the whole file.
Cutting where the audio is quietest keeps words whole; `transcribe_stream` remains the exact path.

Memory stays bounded: the driver holds about batch x max_seconds of audio, never the whole file
(with several files, up to lookahead x batch segments wait for rows, each its own copy: at 256
rows of 30 s, about 1 GB of 16 kHz float32).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from voxtral_desktop.config import SAMPLE_RATE, SAMPLES_PER_TOKEN
from voxtral_desktop.engine.batch import BatchDecoder, padded_audio
from voxtral_desktop.engine.events import SessionUpdate, TimedToken
from voxtral_desktop.engine.transcribe import Transcript

__all__ = [
    "DEFAULT_MAX_SECONDS",
    "DEFAULT_SEARCH_SECONDS",
    "plan_cuts",
    "transcribe_segmented",
    "transcribe_segmented_files",
]

DEFAULT_MAX_SECONDS = 30.0
DEFAULT_SEARCH_SECONDS = 5.0
# The loudness of a candidate cut is measured over 400 ms centred on it: long enough that a
# short stop consonant inside a word does not look like a pause, short enough to fit real pauses.
WINDOW_SAMPLES = 6400
_HALF_WINDOW = WINDOW_SAMPLES // 2


@dataclass(frozen=True)
class _Limits:
    """Segment geometry in samples, whole tokens only, so every cut is a multiple of 1280."""

    max_samples: int
    search_samples: int

    @classmethod
    def of(cls, max_seconds: float, search_seconds: float) -> _Limits:
        if not (math.isfinite(max_seconds) and max_seconds * SAMPLE_RATE >= SAMPLES_PER_TOKEN - 1e-6):
            raise ValueError(f"max_seconds must be at least one 80 ms token, got {max_seconds}")
        if not (math.isfinite(search_seconds) and search_seconds >= 0):
            raise ValueError(f"search_seconds must be >= 0, got {search_seconds}")
        max_tokens = math.floor(max_seconds * SAMPLE_RATE / SAMPLES_PER_TOKEN + 1e-9)
        # A cut strictly after the segment's start, so every segment holds at least one token.
        search_tokens = min(
            math.floor(search_seconds * SAMPLE_RATE / SAMPLES_PER_TOKEN + 1e-9), max_tokens - 1
        )
        return cls(max_tokens * SAMPLES_PER_TOKEN, search_tokens * SAMPLES_PER_TOKEN)


def _next_cut(audio: np.ndarray, start: int, limits: _Limits) -> int | None:
    """The end of the segment that starts at `start`, or None if the rest fits in one segment.

    Candidates are every token boundary in the last `search_samples` before the longest allowed
    end; the quietest (lowest mean square over the window, clipped to [start, len(audio))) wins,
    ties going to the latest, which keeps segments long (silence cuts at the full length). The
    result depends only on audio from `start` on, so a buffer that begins at a cut plans the same
    cuts as the whole file does.
    """
    n = len(audio)
    end = start + limits.max_samples
    if end >= n:
        return None
    best, best_energy = end, math.inf
    for candidate in range(end, end - limits.search_samples - 1, -SAMPLES_PER_TOKEN):
        lo, hi = max(start, candidate - _HALF_WINDOW), min(n, candidate + _HALF_WINDOW)
        window = audio[lo:hi].astype(np.float64)
        energy = float(np.dot(window, window)) / (hi - lo)
        if energy < best_energy:  # strict: among equals the latest candidate stays
            best, best_energy = candidate, energy
    return best


def _tail_limits(limits: _Limits, n_samples: int, batch: int) -> _Limits:
    """Shorter segments for the audio left when the input ends, so its last round fills the
    batch: 60 s left with 30 s segments, 8 at a time, were 2 segments (a round as slow as a full
    one, 6 rows idle) and become 6 of <= 10 s. Segments stay at least a third of the maximum;
    the search window shrinks to a fifth of the new length, so the cuts cannot add a round."""
    token = SAMPLES_PER_TOKEN
    max_tokens = limits.max_samples // token
    rounds = max(1, math.ceil(n_samples / (batch * limits.max_samples)))
    per_segment = math.ceil(n_samples / (rounds * batch) / token * 1.25)
    tokens = min(max_tokens, max(per_segment, max_tokens // 3, 1))
    search = min(limits.search_samples, tokens // 5 * token)
    return _Limits(tokens * token, search)


def plan_cuts(audio: np.ndarray, *, max_seconds: float, search_seconds: float) -> list[int]:
    """Cut points (increasing sample indices, multiples of 1280) splitting 16 kHz mono `audio`
    into segments of at most `max_seconds` (rounded down to whole 80 ms tokens).

    Each cut is the quietest token boundary (RMS over ~400 ms) in the last `search_seconds`
    before its segment's longest allowed end, so words are rarely cut; `search_seconds` is
    clamped to leave every segment at least one token. Audio no longer than `max_seconds`
    (empty included) needs no cut: [].
    """
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"plan_cuts wants mono 1-D audio, got shape {audio.shape}")
    limits = _Limits.of(max_seconds, search_seconds)
    cuts: list[int] = []
    start = 0
    while (cut := _next_cut(audio, start, limits)) is not None:
        cuts.append(cut)
        start = cut
    return cuts


def _check_decoder(decoder: BatchDecoder, limits: _Limits, max_seconds: float) -> None:
    """The decoder's cache must hold the longest segment; better said now than mid-file."""
    needed = len(padded_audio(np.zeros(limits.max_samples, np.float32), decoder.config)) // SAMPLES_PER_TOKEN
    if needed > decoder.max_positions:
        held = (decoder.max_positions - (needed - limits.max_samples // SAMPLES_PER_TOKEN)) * (
            SAMPLES_PER_TOKEN / SAMPLE_RATE
        )
        raise ValueError(
            f"segments of up to {max_seconds:g} s need a BatchDecoder built with max_seconds >= "
            f"{max_seconds:g}; this one holds {max(held, 0.0):.2f} s"
        )


class _Merger:
    """Joins per-segment transcripts, already on the file's timeline, in order.

    The decoder placed each segment's tokens by its start (`BatchDecoder.transcribe`'s
    `starts`): `time_s` moved by its seconds, `step` by its 80 ms positions.
    Steps and times increase within a segment, and each segment starts later than the one before,
    but not strictly across a cut: a segment's last tokens were decoded over its right pad of
    silence, past the cut, so (unless it stopped at EOS) its last 10 positions share their steps
    and times with the next segment's first 10, whatever the delay. Both ends are almost always
    [STREAMING_PAD], and `build_segments` keeps subtitle cues ordered regardless.

    Text: a segment whose text starts without whitespace, after text that ends without it, gets
    one space in front, so words on either side of a cut do not fuse. The space goes into the
    segment's first text-bearing token, so `text == "".join(t.text for t in tokens)` still holds
    and subtitles see the word boundary too. (Text without spaces, such as CJK, then gains one
    space per cut; cuts are tens of seconds apart.)
    """

    def __init__(self, on_update: Callable[[SessionUpdate], None] | None) -> None:
        self.on_update = on_update
        self.tokens: list[TimedToken] = []
        self._ends_open = False  # the text so far is non-empty and ends without whitespace

    def add_batch(self, transcripts: Sequence[Transcript]) -> None:
        first = len(self.tokens)
        for transcript in transcripts:
            self._join(transcript)
        if self.on_update is not None:
            self.on_update(SessionUpdate(tokens=tuple(self.tokens[first:]), finished=False))

    def _join(self, transcript: Transcript) -> None:
        start = len(self.tokens)
        self.tokens.extend(transcript.tokens)
        if self._ends_open and transcript.text and not transcript.text[0].isspace():
            # the space goes into the first token with text (only that token is remade)
            at = next(i for i in range(start, len(self.tokens)) if self.tokens[i].text)
            token = self.tokens[at]
            self.tokens[at] = TimedToken(token.id, token.step, token.time_s, " " + token.text)
        if transcript.text:
            self._ends_open = not transcript.text[-1].isspace()


class _Cutter:
    """One input's segments `(start sample, audio)`, in order, cut where `plan_cuts` would cut the
    whole signal. Audio is buffered until it holds `group` full segments (plus the half window
    the last cut's loudness needs); those are cut, and only the rest is kept. At the end the
    audio left is cut with `tail` limits (`_tail_limits` for batches of `tail_batch`, when
    given, so that it fills them; the group must then be the batch, for the tail to be all that
    is left of a batch's worth). So about group x max_seconds + one chunk is held, and the cuts
    do not depend on the chunk sizes or the group."""

    def __init__(
        self, chunks: Iterable[np.ndarray], limits: _Limits, group: int, tail_batch: int | None
    ) -> None:
        self.chunks, self.limits, self.group, self.tail_batch = chunks, limits, group, tail_batch
        self.n_samples = 0  # read so far

    def _group(self, audio: np.ndarray, final: bool, limits: _Limits) -> list[tuple[int, int]]:
        """Up to `group` segments from the front of `audio` (exactly `group` unless final)."""
        bounds: list[tuple[int, int]] = []
        start = 0
        while len(bounds) < self.group:
            cut = _next_cut(audio, start, limits)
            if cut is None:
                assert final, "a full group was promised"
                bounds.append((start, len(audio)))
                break
            bounds.append((start, cut))
            start = cut
        return bounds

    def _cut(
        self, audio: np.ndarray, start: int, offset: int, final: bool, limits: _Limits
    ) -> Generator[tuple[int, np.ndarray], None, int]:
        """One group of pieces from `audio[start:]` (each a copy, so no piece keeps the buffer
        alive), at file position `offset + start`; returns where the next group starts."""
        bounds = self._group(audio[start:], final, limits)
        for a, b in bounds:
            yield offset + start + a, audio[start + a : start + b].copy()
        return start + bounds[-1][1]

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        # Past this many samples the first `group` cuts, and every window they look at, lie inside
        # the buffer: they are then the cuts planned on the whole file.
        ready = self.group * self.limits.max_samples + _HALF_WINDOW
        offset = 0  # file position of the buffer's first sample
        pending: list[np.ndarray] = []
        n_pending = 0
        for chunk in self.chunks:
            piece = np.asarray(chunk, dtype=np.float32)
            if piece.ndim != 1:
                raise ValueError(f"chunks must be mono 1-D float32 arrays, got shape {piece.shape}")
            pending.append(piece)
            n_pending += len(piece)
            self.n_samples += len(piece)
            if n_pending < ready:
                continue
            # Every group that is ready, from one concatenation (a whole file in one chunk is cut
            # in one pass).
            audio, start = np.concatenate(pending), 0
            while len(audio) - start >= ready:
                start = yield from self._cut(audio, start, offset, False, self.limits)
            offset += start
            rest = audio[start:].copy()  # a copy, so the consumed audio can be freed
            pending, n_pending = [rest], len(rest)
        audio = np.concatenate(pending) if pending else np.zeros(0, np.float32)
        tail = (
            self.limits if self.tail_batch is None else _tail_limits(self.limits, len(audio), self.tail_batch)
        )
        start = 0
        while start < len(audio):
            start = yield from self._cut(audio, start, offset, True, tail)


@dataclass
class _Piece:
    file: int
    index: int  # within its file
    start: int  # sample offset in its file
    audio: np.ndarray


class _FileState:
    """One input's decoded pieces, merged in order as soon as they are contiguous."""

    def __init__(self, on_update: Callable[[SessionUpdate], None] | None) -> None:
        self.merger = _Merger(on_update)
        self.done: dict[int, Transcript] = {}
        self.merged = 0  # pieces merged so far
        self.n_pieces: int | None = None  # known once the input is cut to its end
        self.n_samples = 0

    def flush(self) -> None:
        transcripts = []
        while self.merged in self.done:
            transcripts.append(self.done.pop(self.merged))
            self.merged += 1
        if transcripts:
            self.merger.add_batch(transcripts)

    @property
    def complete(self) -> bool:
        return self.n_pieces is not None and self.merged == self.n_pieces


def _take(pool: list[_Piece], batch: int) -> list[_Piece]:
    """The oldest piece and the `batch - 1` others closest to it in length (the older among
    equals), in pool order: a batch runs as long as its longest row, so similar lengths waste
    few rows, and a piece waits for at most as many batches as there are pieces ahead of it."""
    anchor = len(pool[0].audio)
    others = sorted(range(1, len(pool)), key=lambda i: (abs(len(pool[i].audio) - anchor), i))
    chosen = {0, *others[: batch - 1]}
    taken = [p for i, p in enumerate(pool) if i in chosen]
    pool[:] = [p for i, p in enumerate(pool) if i not in chosen]
    return taken


def transcribe_segmented_files(
    decoder: BatchDecoder,
    sources: Iterable[Iterable[np.ndarray]],
    *,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    search_seconds: float = DEFAULT_SEARCH_SECONDS,
    language: str | None = None,
    on_update: Callable[[int, SessionUpdate], None] | None = None,
    balance_tail: bool = False,
    lookahead: int = 2,
) -> Iterator[tuple[int, Transcript]]:
    """Many inputs (each an iterable of float32 16 kHz chunks, e.g. `iter_audio`, opened only when
    reached) cut into segments that share the decoder's batches: a folder of files keeps all
    `decoder.batch` rows busy, not just the rows one file's segments fill. Yields `(index,
    transcript)` in input order as each input is done; a transcript equals what
    `transcribe_segmented` gives for that input alone (the same cuts; each segment is an
    independent stream), except that only the last input's tail is balanced.

    Up to `lookahead` x batch segments wait; each batch takes the oldest and those closest to it
    in length (`_take`). `on_update(index, update)` gets an input's tokens in order as they are
    merged, then `finished=True`. An input that raises while it is read (a corrupt file) ends
    the run with that error, after the inputs before it are finished and yielded."""
    limits = _Limits.of(max_seconds, search_seconds)
    _check_decoder(decoder, limits, max_seconds)
    files: list[_FileState] = []
    pool: list[_Piece] = []
    yielded = 0

    def update_for(index: int) -> Callable[[SessionUpdate], None] | None:
        return None if on_update is None else lambda update: on_update(index, update)

    def decode() -> None:
        pieces = _take(pool, decoder.batch)
        transcripts = decoder.transcribe([p.audio for p in pieces], [p.start for p in pieces])
        for piece, transcript in zip(pieces, transcripts, strict=True):
            files[piece.file].done[piece.index] = transcript
        for index in sorted({p.file for p in pieces}):
            files[index].flush()

    def finished() -> Iterator[tuple[int, Transcript]]:
        nonlocal yielded
        while yielded < len(files) and files[yielded].complete:
            state = files[yielded]
            if on_update is not None:
                on_update(yielded, SessionUpdate(finished=True))
            tokens = state.merger.tokens
            yield (
                yielded,
                Transcript(
                    text="".join(t.text for t in tokens),
                    tokens=tuple(tokens),
                    delay_ms=decoder.config.delay_ms,
                    duration_s=state.n_samples / SAMPLE_RATE,
                    language=language,
                ),
            )
            state.merger.tokens = []  # handed over: not held twice
            yielded += 1

    window = max(1, lookahead) * decoder.batch
    inputs = iter(sources)
    current = next(inputs, None)
    while current is not None:
        following = next(inputs, None)  # only the last input's tail is balanced
        index = len(files)
        state = _FileState(update_for(index))
        files.append(state)
        # Only the last input's tail is balanced, and only then is a batch's worth of audio
        # buffered (see _Cutter); otherwise it is cut a segment at a time: the same cuts.
        balance = balance_tail and following is None
        group = decoder.batch if balance else 1
        cutter = _Cutter(current, limits, group, decoder.batch if balance else None)
        pieces, count = iter(cutter), 0
        while True:
            try:
                start, audio = next(pieces)
            except StopIteration:
                break
            except Exception:
                # An input that cannot be read (a corrupt file): the inputs before it are
                # finished and handed out first, then the error goes up.
                pool[:] = [p for p in pool if p.file != index]
                files.pop()
                while pool:
                    decode()
                    yield from finished()
                raise
            pool.append(_Piece(index, count, start, audio))
            count += 1
            if len(pool) >= window:
                decode()
                yield from finished()
        state.n_pieces, state.n_samples = count, cutter.n_samples
        yield from finished()
        current = following
    while pool:
        decode()
        yield from finished()


def transcribe_segmented(
    decoder: BatchDecoder,
    chunks: Iterable[np.ndarray],
    *,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    search_seconds: float = DEFAULT_SEARCH_SECONDS,
    language: str | None = None,
    on_update: Callable[[SessionUpdate], None] | None = None,
    balance_tail: bool = False,
) -> Transcript:
    """Transcribe float32 16 kHz `chunks` (e.g. `iter_audio`) as segments decoded `decoder.batch`
    at a time, cut where `plan_cuts` would cut the whole signal (with `balance_tail`, the audio
    left when the input ends is cut into shorter segments that fill the batch: `_tail_limits`).

    Audio is cut as soon as a segment (with the half window its cut's loudness needs) is in, or
    with `balance_tail` a batch's worth of segments (the tail is what is left of one); a batch
    goes to the decoder when it is full. So at most about batch x max_seconds + one chunk is
    held, and the cuts do not depend on the chunk sizes.
    `on_update` gets each batch's tokens (already on the file's timeline), then `finished=True`.
    Input with no samples gives an empty transcript. (`transcribe_segmented_files` with one
    input, its segments in order.)
    """
    results = transcribe_segmented_files(
        decoder,
        [chunks],
        max_seconds=max_seconds,
        search_seconds=search_seconds,
        language=language,
        on_update=None if on_update is None else lambda _index, update: on_update(update),
        balance_tail=balance_tail,
        lookahead=1,
    )
    ((_, transcript),) = results
    return transcript
