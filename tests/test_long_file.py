"""Long files as a batch of segments (engine/long_file.py), on the CPU with tiny random models."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from test_cli import transcribe, write_wav
from test_fast_paths import q4_tensors
from test_parity import CPU, VOCAB, speechlike

from voxtral_desktop.cli import main
from voxtral_desktop.config import SAMPLE_RATE, SAMPLES_PER_TOKEN, StreamConfig
from voxtral_desktop.engine.batch import BatchDecoder
from voxtral_desktop.engine.events import SessionUpdate, TimedToken
from voxtral_desktop.engine.long_file import (
    WINDOW_SAMPLES,
    plan_cuts,
    transcribe_segmented,
    transcribe_segmented_files,
)
from voxtral_desktop.engine.session import StreamingSession
from voxtral_desktop.engine.transcribe import Transcript, transcribe_stream
from voxtral_desktop.model.build import build_model
from voxtral_desktop.synthetic.model import tiny_config

SR = SAMPLE_RATE
TOKEN = SAMPLES_PER_TOKEN


def noise(seconds: float, seed: int, level: float = 0.1) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def three_parts() -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Three speech-like parts with 1 s of digital silence between them, and where the gaps are.

    A faint noise floor under the parts keeps their own short pauses louder than the real gaps.
    """
    parts = [speechlike(1.5, 40 + i) + noise(1.5, 50 + i, 0.003) for i in range(3)]
    gap = np.zeros(SR, np.float32)
    audio = np.concatenate([parts[0], gap, parts[1], gap, parts[2]])
    gaps = [(int(1.5 * SR), int(2.5 * SR)), (int(4.0 * SR), int(5.0 * SR))]
    return audio, gaps


# ---- plan_cuts ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("seconds", "max_seconds", "search_seconds"),
    [(20.3, 3.0, 1.0), (20.3, 2.5, 5.0), (7.0, 0.08, 0.0), (31.0, 10.0, 0.0), (12.34, 1.3, 0.5)],
)
def test_plan_cuts_properties(seconds: float, max_seconds: float, search_seconds: float) -> None:
    audio = speechlike(seconds, 7)
    cuts = plan_cuts(audio, max_seconds=max_seconds, search_seconds=search_seconds)
    max_samples = int(max_seconds * SR + 1e-6) // TOKEN * TOKEN
    bounds = [0, *cuts, len(audio)]
    assert all(c % TOKEN == 0 for c in cuts)
    assert all(a < b for a, b in itertools.pairwise(bounds))  # increasing, none empty
    assert all(b - a <= max_samples for a, b in itertools.pairwise(bounds))
    # Every cut lies in the search range before its segment's longest end.
    search = min(int(search_seconds * SR + 1e-6) // TOKEN * TOKEN, max_samples - TOKEN)
    assert all(max_samples - search <= b - a for a, b in zip(bounds, cuts, strict=False))
    # Deterministic, and what follows a cut depends only on the audio from the cut on.
    assert plan_cuts(audio.copy(), max_seconds=max_seconds, search_seconds=search_seconds) == cuts
    if cuts:
        rest = plan_cuts(audio[cuts[0] :], max_seconds=max_seconds, search_seconds=search_seconds)
        assert [cuts[0] + c for c in rest] == cuts[1:]


def test_a_cut_lands_in_a_silent_gap() -> None:
    audio = noise(20.0, 1)
    audio[int(6.1 * SR) : int(6.7 * SR)] = 0.0  # inside the first search range [5, 8] s
    audio[int(12.0 * SR) : int(12.5 * SR)] = 0.0  # inside the second one, counted from the first cut
    cuts = plan_cuts(audio, max_seconds=8.0, search_seconds=3.0)
    half = WINDOW_SAMPLES // 2
    assert int(6.1 * SR) + half <= cuts[0] <= int(6.7 * SR) - half
    assert int(12.0 * SR) + half <= cuts[1] <= int(12.5 * SR) - half
    assert len(cuts) == 2 and len(audio) - cuts[1] <= 8 * SR


def test_a_quieter_spot_wins_even_without_digital_silence() -> None:
    audio = noise(10.0, 2)
    audio[int(3.0 * SR) : int(3.6 * SR)] *= 0.1
    assert plan_cuts(audio, max_seconds=4.0, search_seconds=2.0)[0] in range(
        int(3.0 * SR) + WINDOW_SAMPLES // 2, int(3.6 * SR) - WINDOW_SAMPLES // 2 + 1, TOKEN
    )


def test_silence_noise_short_and_empty_audio() -> None:
    # Digital silence ties everywhere: the latest candidate wins, segments are as long as allowed
    # (3 s is 37.5 tokens: 37 of them).
    longest = 37 * TOKEN
    assert plan_cuts(np.zeros(10 * SR, np.float32), max_seconds=3.0, search_seconds=1.0) == [
        longest,
        2 * longest,
        3 * longest,
    ]
    pure = noise(30.0, 3)
    cuts = plan_cuts(pure, max_seconds=5.0, search_seconds=2.0)
    assert len(cuts) in range(6, 10) and cuts == plan_cuts(pure, max_seconds=5.0, search_seconds=2.0)
    assert plan_cuts(noise(2.9, 4), max_seconds=3.0, search_seconds=1.0) == []
    assert plan_cuts(np.zeros(longest, np.float32), max_seconds=3.0, search_seconds=1.0) == []  # exactly max
    assert plan_cuts(np.zeros(longest + 1, np.float32), max_seconds=3.0, search_seconds=1.0) == [longest]
    assert plan_cuts(np.zeros(0, np.float32), max_seconds=3.0, search_seconds=1.0) == []


@pytest.mark.parametrize(
    "kwargs", [{"max_seconds": 0.05, "search_seconds": 0.0}, {"max_seconds": 3.0, "search_seconds": -1.0}]
)
def test_plan_cuts_rejects_bad_limits(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        plan_cuts(np.zeros(SR, np.float32), **kwargs)
    with pytest.raises(ValueError):
        plan_cuts(np.zeros((2, SR), np.float32), max_seconds=3.0, search_seconds=1.0)


# ---- transcribe_segmented on a real (tiny) model --------------------------------------------
MAX_S, SEARCH_S = 3.0, 1.2


@pytest.fixture(scope="module")
def tiny_model():
    config = tiny_config(decoder_vocab_size=VOCAB)
    return build_model(config, q4_tensors(config, 21), device=CPU, dtype=torch.float32, fuse=True)


class Counted:
    """Wraps chunks and a decoder to measure how much audio the driver holds at any time."""

    def __init__(self, decoder: BatchDecoder) -> None:
        self.decoder, self.read, self.sent, self.peak, self.calls = decoder, 0, 0, 0, 0
        self.batch, self.config, self.max_positions = decoder.batch, decoder.config, decoder.max_positions

    def chunks(self, audio: np.ndarray, size: int) -> Iterator[np.ndarray]:
        for i in range(0, len(audio), size):
            self.read += len(audio[i : i + size])
            self.peak = max(self.peak, self.read - self.sent)
            yield audio[i : i + size]

    def transcribe(self, audios: list[np.ndarray], starts: list[int] | None = None) -> list[Transcript]:
        self.calls += 1
        self.sent += sum(len(a) for a in audios)
        return self.decoder.transcribe(audios, starts)


def test_segments_equal_one_stream_each_and_chunking_changes_nothing(tiny_model, tokenizer_small) -> None:
    stream = StreamConfig(480)
    audio, gaps = three_parts()
    cuts = plan_cuts(audio, max_seconds=MAX_S, search_seconds=SEARCH_S)
    assert len(cuts) == 2 and all(a < c < b for c, (a, b) in zip(cuts, gaps, strict=True))
    bounds = [0, *cuts, len(audio)]

    decoder = BatchDecoder(tiny_model, tokenizer_small, stream, batch=2, max_seconds=MAX_S)
    counted = Counted(decoder)
    updates: list[SessionUpdate] = []
    merged = transcribe_segmented(
        counted,  # type: ignore[arg-type]
        counted.chunks(audio, 7919),
        max_seconds=MAX_S,
        search_seconds=SEARCH_S,
        language="en",
        on_update=updates.append,
    )
    # Two batches (2 segments, then the last one); never more than (batch + 1) x max held.
    assert counted.calls == 2 and counted.sent == len(audio)
    assert counted.peak <= (decoder.batch + 1) * MAX_S * SR
    assert [u.finished for u in updates] == [False, False, True]
    assert [t for u in updates for t in u.tokens] == list(merged.tokens)

    session = StreamingSession(tiny_model, tokenizer_small, stream)
    alone = [transcribe_stream(session, [audio[a:b]]) for a, b in itertools.pairwise(bounds)]
    position = 0
    for start, one in zip(bounds, alone, strict=False):
        part = merged.tokens[position : position + len(one.tokens)]
        position += len(one.tokens)
        assert [t.id for t in part] == [t.id for t in one.tokens]
        assert [t.step for t in part] == [t.step + start // TOKEN for t in one.tokens]
        assert [t.time_s for t in part] == pytest.approx([t.time_s + start / SR for t in one.tokens])
        steps = [t.step for t in part]
        assert steps == sorted(set(steps))  # strictly increasing within a segment
    assert position == len(merged.tokens)
    # Across cuts: every segment starts later than the one before, on the file's timeline.
    firsts = [merged.tokens[sum(len(o.tokens) for o in alone[:k])] for k in range(3)]
    assert [f.step for f in firsts] == sorted({f.step for f in firsts})
    assert [f.time_s for f in firsts] == sorted({f.time_s for f in firsts})
    # ... but a segment's tail, decoded over its right pad, overlaps the next one's first 10 steps.
    lasts = [merged.tokens[sum(len(o.tokens) for o in alone[: k + 1]) - 1] for k in range(2)]
    assert all(0 < last.step - first.step + 1 <= 10 for last, first in zip(lasts, firsts[1:], strict=True))

    assert merged.text == "".join(t.text for t in merged.tokens)
    joined = ""
    for one in alone:  # one space where neither side of a cut has whitespace
        glue = joined and not joined[-1].isspace() and one.text and not one.text[0].isspace()
        joined += " " * bool(glue) + one.text
    assert merged.text == joined
    assert merged.duration_s == pytest.approx(len(audio) / SR)
    assert merged.delay_ms == 480 and merged.language == "en"

    # One chunk, or the whole file at once, gives the same transcript.
    kwargs = {"max_seconds": MAX_S, "search_seconds": SEARCH_S, "language": "en"}
    assert transcribe_segmented(decoder, [audio], **kwargs) == merged
    assert transcribe_segmented(decoder, iter([audio[:1], audio[1:40000], audio[40000:]]), **kwargs) == merged


def test_batch_decoder_places_tokens_by_their_start(tiny_model, tokenizer_small) -> None:
    """`starts` puts each signal's tokens on its file's timeline as they are made."""
    decoder = BatchDecoder(tiny_model, tokenizer_small, StreamConfig(480), batch=2, max_seconds=3.0)
    audios = [speechlike(1.5, 1), speechlike(2.0, 2)]
    starts = [0, 3 * SR + 7]
    runs = zip(decoder.transcribe(audios), decoder.transcribe(audios, starts), starts, strict=True)
    for plain, placed, start in runs:
        assert placed.text == plain.text and placed.duration_s == plain.duration_s and plain.tokens
        steps, seconds = start // SAMPLES_PER_TOKEN, start / SR
        moved = [(t.id, t.step + steps, t.time_s + seconds, t.text) for t in plain.tokens]
        assert [(t.id, t.step, t.time_s, t.text) for t in placed.tokens] == moved
    with pytest.raises(ValueError, match="2 starts for 1 signals"):
        decoder.transcribe(audios[:1], starts)


def test_a_decoder_too_short_for_the_segments_is_refused(tiny_model, tokenizer_small) -> None:
    decoder = BatchDecoder(tiny_model, tokenizer_small, StreamConfig(480), batch=2, max_seconds=2.0)
    with pytest.raises(ValueError, match=r"max_seconds >= 3"):
        transcribe_segmented(decoder, [np.zeros(SR, np.float32)], max_seconds=3.0)
    transcribe_segmented(decoder, [np.zeros(SR, np.float32)], max_seconds=2.0)  # fits


# ---- the merge, with a scripted decoder -----------------------------------------------------
class ScriptedDecoder:
    """Stands in for BatchDecoder: segment i's transcript is texts[i] on one token at step 40 of
    the segment, placed on the file's timeline by its start as BatchDecoder places tokens."""

    def __init__(self, texts: list[str], batch: int = 3) -> None:
        self.texts, self.batch, self.config, self.max_positions = texts, batch, StreamConfig(480), 10**6
        self.lengths: list[int] = []

    def transcribe(self, audios: list[np.ndarray], starts: list[int]) -> list[Transcript]:
        out = []
        for audio, start in zip(audios, starts, strict=True):
            text = self.texts[len(self.lengths)]
            self.lengths.append(len(audio))
            steps, seconds = start // SAMPLES_PER_TOKEN, start / SR
            tokens = (
                TimedToken(32, 39 + steps, 0.4 + seconds, ""),
                TimedToken(1500, 40 + steps, 0.48 + seconds, text),
            )
            out.append(Transcript(text, tokens, 480, len(audio) / SR))
        return out


def test_merged_text_gets_one_space_between_segments_that_need_it() -> None:
    texts = ["Hello", "world.", " Already spaced", "", "next ", "end"]
    decoder = ScriptedDecoder(texts)
    audio = np.zeros(6 * 2 * SR - 5, np.float32)  # six segments of at most 2 s of silence
    updates: list[SessionUpdate] = []
    merged = transcribe_segmented(
        decoder,  # type: ignore[arg-type]
        [audio],
        max_seconds=2.0,
        search_seconds=0.5,
        on_update=updates.append,
    )
    assert decoder.lengths == [2 * SR] * 5 + [2 * SR - 5]
    assert merged.text == "Hello world. Already spaced next end"
    assert merged.text == "".join(t.text for t in merged.tokens)
    assert [t.step for t in merged.tokens] == [s + 25 * k for k in range(6) for s in (39, 40)]
    assert [t.time_s for t in merged.tokens] == pytest.approx(
        [x + 2 * k for k in range(6) for x in (0.4, 0.48)]
    )
    assert [len(u.tokens) for u in updates] == [6, 6, 0] and updates[-1].finished


@pytest.mark.parametrize("seconds", [1.5, 6.9, 7.5, 13.3, 20.0])
def test_a_balanced_tail_fills_the_last_round(seconds: float) -> None:
    """With balance_tail the audio left at the end is cut into shorter segments (>= a third of
    the maximum) that fill the batch: never more rounds than without, every segment within the
    maximum, the whole signal sent once, in order."""
    audio = noise(seconds, 7)
    rounds, segments = {}, {}
    for balance in (False, True):
        decoder = ScriptedDecoder(["x"] * 100, batch=3)
        counted = Counted(decoder)  # type: ignore[arg-type]
        transcribe_segmented(
            counted,  # type: ignore[arg-type]
            counted.chunks(audio, 7919),
            max_seconds=2.0,
            search_seconds=0.5,
            balance_tail=balance,
        )
        assert counted.sent == len(audio) and sum(decoder.lengths) == len(audio)
        assert max(decoder.lengths) <= 2 * SR
        rounds[balance], segments[balance] = counted.calls, len(decoder.lengths)
        if balance and len(audio) > 2 * SR:
            assert min(decoder.lengths[:-1]) >= 25 // 3 * TOKEN  # a third of 25 tokens
    assert rounds[True] <= rounds[False]
    if seconds == 7.5:  # a full round of 3 x <= 2 s, then the rest: in more rows, same rounds
        assert rounds == {False: 2, True: 2} and segments[True] > segments[False]


def test_no_samples_give_an_empty_transcript() -> None:
    decoder = ScriptedDecoder([])
    updates: list[SessionUpdate] = []
    merged = transcribe_segmented(decoder, iter([]), on_update=updates.append)  # type: ignore[arg-type]
    assert merged == Transcript("", (), 480, 0.0)
    assert updates == [SessionUpdate(finished=True)] and decoder.lengths == []


def test_the_buffer_stays_bounded_on_a_long_input() -> None:
    """Ten minutes in 1.9 s chunks, 2 s segments, 3 at a time: the driver holds 3 segments, the
    half window the last cut looks past them, and one chunk; never the file."""
    decoder = ScriptedDecoder(["x"] * 400)
    counted = Counted(decoder)  # type: ignore[arg-type]
    audio, chunk = noise(600.0, 5), int(1.9 * SR)
    merged = transcribe_segmented(
        counted,  # type: ignore[arg-type]
        counted.chunks(audio, chunk),
        max_seconds=2.0,
        search_seconds=0.5,
    )
    assert counted.sent == len(audio)
    assert counted.peak <= decoder.batch * 2 * SR + WINDOW_SAMPLES // 2 + chunk
    bounds = [0, *plan_cuts(audio, max_seconds=2.0, search_seconds=0.5), len(audio)]
    assert decoder.lengths == [b - a for a, b in itertools.pairwise(bounds)]
    assert merged.text == " ".join(["x"] * len(decoder.lengths))


# ---- many files sharing batches -------------------------------------------------------------
def test_files_share_batches_and_each_equals_its_own_run(tiny_model, tokenizer_small) -> None:
    """Three inputs (one empty) through one decoder of 2 rows: every transcript equals the input
    decoded on its own, they come back in input order, and rows are shared across inputs."""
    audio, _ = three_parts()
    inputs = [audio, np.zeros(0, np.float32), speechlike(2.2, 9)]
    decoder = BatchDecoder(tiny_model, tokenizer_small, StreamConfig(480), batch=2, max_seconds=MAX_S)
    kwargs = {"max_seconds": MAX_S, "search_seconds": SEARCH_S, "language": "en"}
    alone = [transcribe_segmented(decoder, [a], **kwargs) for a in inputs]

    counted = Counted(decoder)
    updates: dict[int, list[SessionUpdate]] = {0: [], 1: [], 2: []}
    results = list(
        transcribe_segmented_files(
            counted,  # type: ignore[arg-type]
            [counted.chunks(a, 7919) for a in inputs],
            on_update=lambda index, update: updates[index].append(update),
            **kwargs,
        )
    )
    assert [index for index, _ in results] == [0, 1, 2]
    assert [t for _, t in results] == alone
    # 3 + 0 + 1 segments in 2 rows: 2 batches (alone: 2 + 0 + 1 = 3).
    assert counted.calls == 2 and counted.sent == sum(len(a) for a in inputs)
    for index, (_, transcript) in enumerate(results):
        assert updates[index][-1] == SessionUpdate(finished=True)
        assert [t for u in updates[index] for t in u.tokens] == list(transcript.tokens)


def test_a_dense_batch_decoder_gives_the_same_text_and_leaves_the_model_q4(
    tiny_model, tokenizer_small
) -> None:
    """BatchDecoder(dense=True) runs on its own dense copies of the Q4 matrices: the same tokens
    (the copies are the backends' exact dense forms), and outside its calls every other user of
    the model still gets the Q4 path."""
    from voxtral_desktop.engine.batch import choose_dense
    from voxtral_desktop.kernels.linear import Q4Linear, dense_weights

    audio, _ = three_parts()
    inputs = [audio[: 2 * SR], audio[2 * SR : 5 * SR]]
    runs = {}
    for dense in (False, True):
        decoder = BatchDecoder(
            tiny_model, tokenizer_small, StreamConfig(480), batch=2, max_seconds=MAX_S, dense=dense
        )
        assert decoder.dense == dense
        runs[dense] = decoder.transcribe(inputs)
        q4 = [m for m in tiny_model.modules() if isinstance(m, Q4Linear)]
        assert q4 and all(m.dense is None for m in q4) and tiny_model.tok_embeddings.dense is None
    assert runs[True] == runs[False]
    # A nested dense_weights (the encoder phase) keeps the decoder's copies and leaves them set.
    with decoder._weights():
        held = [m.dense for m in tiny_model.modules() if isinstance(m, Q4Linear)]
        with dense_weights(tiny_model.encoder, torch.float32):
            pass
        after = [m.dense for m in tiny_model.modules() if isinstance(m, Q4Linear)]
        assert held and all(a is not None and a is b for a, b in zip(after, held, strict=True))
    assert choose_dense(tiny_model, 64) == (False, "Q4 weights (dense copies pay off on CUDA only)")
    auto = BatchDecoder(
        tiny_model, tokenizer_small, StreamConfig(480), batch=2, max_seconds=MAX_S, dense=None
    )
    assert not auto.dense and auto.dense_reason == "Q4 weights (dense copies pay off on CUDA only)"


def test_out_of_memory_for_the_dense_copy_keeps_the_q4_weights(
    tiny_model, tokenizer_small, monkeypatch
) -> None:
    from voxtral_desktop.engine import batch

    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(batch, "DenseCopy", no_memory)
    decoder = BatchDecoder(
        tiny_model, tokenizer_small, StreamConfig(480), batch=2, max_seconds=MAX_S, dense=True
    )
    assert not decoder.dense and decoder.dense_reason == "Q4 weights (out of memory for a dense copy)"
    assert decoder.transcribe([three_parts()[0][: 2 * SR]])[0].tokens


def test_out_of_memory_while_decoding_is_one_line(capsys, tiny: Path, long_wav: Path, monkeypatch) -> None:
    """A GPU that runs out of memory mid-run: the command says so in one line, no traceback."""

    def no_memory(self, audios, starts):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(BatchDecoder, "_transcribe", no_memory)
    code, out, err = transcribe(capsys, tiny, long_wav, long_wav, "--segment-seconds", "1")
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and "ran out of memory on cpu decoding" in err and "Traceback" not in err


def test_out_of_memory_for_the_rows_is_a_device_error(tiny: Path, monkeypatch) -> None:
    from voxtral_desktop.engine import engine as engine_module
    from voxtral_desktop.errors import DeviceError

    engine = engine_module.Engine.load(tiny, device="cpu")

    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(engine_module, "BatchDecoder", no_memory)
    with pytest.raises(DeviceError, match="not enough memory on cpu for 64 streams of 30 s") as caught:
        engine.batch_decoder(StreamConfig(480), batch=64, max_seconds=30.0)
    assert caught.value.__cause__ is None


class LengthDecoder(ScriptedDecoder):
    """Records each batch's segment lengths (in seconds) and which batch every segment went to."""

    def __init__(self, batch: int) -> None:
        super().__init__(["x"] * 1000, batch)
        self.batches: list[list[float]] = []

    def transcribe(self, audios: list[np.ndarray], starts: list[int]) -> list[Transcript]:
        self.batches.append([round(len(a) / SR, 2) for a in audios])
        return super().transcribe(audios, starts)


def test_batches_group_segments_of_similar_length_and_finish_files_in_order() -> None:
    """Files of 5 s with 2 s segments give 2, 2 and 1 s pieces: with a lookahead the short
    pieces share batches instead of idling rows beside long ones, and files still come back
    in order, each with all its audio."""
    files = [noise(5.0, seed) for seed in range(6)]
    kwargs = {"max_seconds": 2.0, "search_seconds": 0.0}
    runs = {}
    for lookahead in (1, 2):
        decoder = LengthDecoder(batch=3)
        results = list(
            transcribe_segmented_files(decoder, [[f] for f in files], lookahead=lookahead, **kwargs)  # type: ignore[arg-type]
        )
        assert [i for i, _ in results] == list(range(6))
        assert all(t.duration_s == pytest.approx(5.0) for _, t in results)
        assert all(t.text == "x x x" for _, t in results)
        runs[lookahead] = decoder.batches
    # Batch time is its longest row: in order, every batch holds a 2 s piece.
    assert all(max(b) == 2.0 for b in runs[1])
    assert sum(max(b) for b in runs[2]) < sum(max(b) for b in runs[1])
    assert sorted(x for b in runs[2] for x in b) == sorted(x for b in runs[1] for x in b)


def test_an_unreadable_input_ends_the_run_after_the_inputs_before_it() -> None:
    """A file that breaks part-way: the files before it, some of whose segments were still
    waiting for rows, are finished and handed out first; then its error goes up."""
    from voxtral_desktop.errors import AudioError

    def broken():
        yield noise(3.0, 1)
        raise AudioError("broken.wav: invalid data found")

    decoder = ScriptedDecoder(["x"] * 100, batch=4)
    results = transcribe_segmented_files(
        decoder,  # type: ignore[arg-type]
        [[noise(5.0, 2)], [noise(3.0, 3)], broken(), [noise(4.0, 4)]],
        max_seconds=2.0,
        search_seconds=0.0,
    )
    got = []
    with pytest.raises(AudioError, match=r"broken\.wav"):
        for index, transcript in results:
            got.append((index, transcript.duration_s))
    assert got == [(0, 5.0), (1, 3.0)]
    assert sum(decoder.lengths) == 8 * SR  # the broken file's pieces were never decoded


def test_many_files_hold_a_bounded_amount_of_audio() -> None:
    """Twenty 10 s inputs, 2 s segments, 3 rows, lookahead 2: the driver holds the waiting
    pieces and one segment's buffer (inputs before the last are cut a segment at a time), never
    the folder."""
    decoder = ScriptedDecoder(["x"] * 1000)
    counted = Counted(decoder)  # type: ignore[arg-type]
    chunk = int(1.9 * SR)
    files = [noise(10.0, seed) for seed in range(20)]
    results = list(
        transcribe_segmented_files(
            counted,  # type: ignore[arg-type]
            [counted.chunks(f, chunk) for f in files],
            max_seconds=2.0,
            search_seconds=0.5,
        )
    )
    assert len(results) == 20 and counted.sent == 20 * 10 * SR
    held = 2 * decoder.batch * 2 * SR + 2 * SR + WINDOW_SAMPLES // 2 + chunk
    assert counted.peak <= held


# ---- the command line -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    assert main(["make-tiny", str(out), "--format", "native"]) == 0
    return out / "native"


@pytest.fixture(scope="module")
def long_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    audio, _ = three_parts()
    return write_wav(tmp_path_factory.mktemp("long") / "three.wav", audio)


def test_cli_segment_seconds(capsys: pytest.CaptureFixture[str], tiny: Path, long_wav: Path) -> None:
    from voxtral_desktop.audio.decode import iter_audio
    from voxtral_desktop.engine.engine import Engine
    from voxtral_desktop.engine.transcribe import transcribe_file
    from voxtral_desktop.engine.writers import format_json

    engine = Engine.load(tiny, device="cpu")
    config = StreamConfig(engine.default_delay_ms)
    decoder = engine.batch_decoder(config, batch=8, max_seconds=2.0)
    segmented = transcribe_segmented(
        decoder, iter_audio(long_wav, chunk_seconds=30.0), max_seconds=2.0, balance_tail=True
    )
    single = transcribe_file(engine.session(config), long_wav)
    assert len(segmented.tokens) != len(single.tokens)  # two different paths

    for option, expected in (("2", segmented), ("0", single)):
        code, out, err = transcribe(capsys, tiny, long_wav, "-f", "json", "--segment-seconds", option)
        assert code == 0, err
        got = json.loads(out)
        assert got == json.loads(json.dumps(format_json(expected)))
        assert got["text"] == expected.text.strip()
    # Without the option, on the CPU: the single stream.
    code, out, err = transcribe(capsys, tiny, long_wav)
    assert code == 0, err
    assert out == single.text.strip() + "\n"


def test_cli_several_files_share_the_segment_rows(
    capsys: pytest.CaptureFixture[str], tiny: Path, long_wav: Path, tmp_path: Path
) -> None:
    """Two files with segments: one decoder with rows for both, JSON Lines in input order, each
    file's transcript that of the file alone (only the last file's tail is balanced)."""
    from voxtral_desktop.audio.decode import iter_audio
    from voxtral_desktop.cli import _folder_rows
    from voxtral_desktop.engine.engine import Engine
    from voxtral_desktop.engine.writers import format_json

    short = write_wav(tmp_path / "short.wav", speechlike(2.6, 11))
    rows = _folder_rows([long_wav, short], 1.0)
    assert rows == 16  # 7 + 3 one-second segments, as a power of two from 8
    engine = Engine.load(tiny, device="cpu")
    decoder = engine.batch_decoder(StreamConfig(engine.default_delay_ms), batch=rows, max_seconds=1.0)
    expected = [
        transcribe_segmented(
            decoder, iter_audio(path, chunk_seconds=30.0), max_seconds=1.0, balance_tail=last
        )
        for path, last in ((long_wav, False), (short, True))
    ]
    code, out, err = transcribe(capsys, tiny, long_wav, short, "-f", "json", "--segment-seconds", "1")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 2
    for line, transcript in zip(lines, expected, strict=True):
        assert json.loads(line) == json.loads(json.dumps(format_json(transcript)))


def test_cli_several_files_with_one_that_will_not_decode(
    capsys: pytest.CaptureFixture[str], tiny: Path, long_wav: Path, tmp_path: Path
) -> None:
    """The files are decoded ahead in worker processes where a core is spare (audio/prefetch.py);
    one whose header states 2 s but holds noise fails there. The file before it is written, then
    one error line."""
    from test_decode import sine, write_media

    header = write_media(tmp_path / "g.flac", [("flac", SR, np.stack([sine(SR, 2.0)]))]).read_bytes()[:300]
    bad = tmp_path / "bad.flac"
    bad.write_bytes(header + np.random.default_rng(0).bytes(20_000))
    short = write_wav(tmp_path / "short.wav", speechlike(2.6, 11))
    code, out, err = transcribe(capsys, tiny, long_wav, bad, short, "-f", "txt", "--segment-seconds", "1")
    assert code != 0 and len(out.splitlines()) == 1
    assert err.count("\n") == 1 and "bad.flac" in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["-1", "0.01", "nan", "inf"])
def test_cli_rejects_a_bad_segment_length(
    capsys: pytest.CaptureFixture[str],
    tiny: Path,
    long_wav: Path,
    value: str,
) -> None:
    code = main(["transcribe", str(long_wav), "--model", str(tiny), "--segment-seconds", value])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("voxtral-desktop: error: --segment-seconds")
    assert "Traceback" not in err


def test_cli_segments_that_do_not_fit_the_gpu(
    capsys: pytest.CaptureFixture[str], tiny: Path, long_wav: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of memory for the segment batch: asked-for segments fail with one line; the default
    (segments on a GPU) falls back to one stream with a warning, and the text is still written."""
    from voxtral_desktop import cli
    from voxtral_desktop.engine.engine import Engine
    from voxtral_desktop.errors import DeviceError

    def no_memory(self, config, *, batch, max_seconds):
        raise DeviceError(f"not enough memory for {batch} streams of {max_seconds:g} s")

    monkeypatch.setattr(Engine, "batch_decoder", no_memory)
    code, out, err = transcribe(capsys, tiny, long_wav, "--segment-seconds", "2")
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and "not enough memory" in err and "Traceback" not in err

    _, single, _ = transcribe(capsys, tiny, long_wav, "--segment-seconds", "0")
    monkeypatch.setattr(cli, "default_segment_seconds", lambda device_type: 2.0)
    code, out, err = transcribe(capsys, tiny, long_wav)
    assert code == 0 and out == single
    assert "one stream instead" in err


def test_cli_several_files_take_fewer_rows_when_the_gpu_is_short(
    capsys: pytest.CaptureFixture[str], tiny: Path, long_wav: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several files: their rows (here 64), then half that, ... down to SEGMENT_BATCH; the first
    size that fits decodes every file."""
    from voxtral_desktop import cli
    from voxtral_desktop.engine.engine import Engine
    from voxtral_desktop.errors import DeviceError

    real = Engine.batch_decoder
    asked: list[int] = []

    def short_of_memory(self, config, *, batch, max_seconds):
        asked.append(batch)
        if batch > 16:
            raise DeviceError(f"not enough memory for {batch} streams of {max_seconds:g} s")
        return real(self, config, batch=batch, max_seconds=max_seconds)

    monkeypatch.setattr(Engine, "batch_decoder", short_of_memory)
    monkeypatch.setattr(cli, "_folder_rows", lambda files, segment_s: 64)
    code, out, err = transcribe(capsys, tiny, long_wav, long_wav, "-f", "json", "--segment-seconds", "1")
    assert code == 0, err
    assert asked == [64, 32, 16]
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 2 and all(line["text"] for line in lines)


def test_folder_rows_follow_the_files_durations(long_wav: Path, tmp_path: Path) -> None:
    from voxtral_desktop.audio.decode import metadata_duration
    from voxtral_desktop.cli import FOLDER_BATCH, SEGMENT_BATCH, _folder_rows

    assert metadata_duration(long_wav) == pytest.approx(len(three_parts()[0]) / SR)  # 6.5 s
    assert _folder_rows([long_wav, long_wav], 2.0) == SEGMENT_BATCH  # 4 + 4 segments
    assert _folder_rows([long_wav] * 3, 1.0) == 32  # 21 segments
    assert _folder_rows([long_wav] * 100, 1.0) == FOLDER_BATCH  # capped
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    assert metadata_duration(junk) is None
    assert _folder_rows([long_wav, junk], 2.0) == FOLDER_BATCH  # unknown: as many as allowed
