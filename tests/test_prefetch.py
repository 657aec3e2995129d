"""A folder's files decoded ahead in worker processes (audio/prefetch.py): the same chunks and
the same errors as `iter_audio`, in order."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from test_decode import ERROR_CASES, sine, write_media, write_wav_s16

from voxtral_desktop.audio import prefetch
from voxtral_desktop.audio.decode import iter_audio
from voxtral_desktop.errors import AudioError

SR = 16000


def folder(tmp_path: Path) -> list[Path]:
    """Files of several formats, rates, channel counts and lengths."""
    rng = np.random.default_rng(3)
    return [
        write_wav_s16(tmp_path / "a.wav", 0.3 * rng.standard_normal(SR * 3).astype(np.float32), SR),
        write_media(
            tmp_path / "b.flac", [("flac", 44100, np.stack([sine(44100, 2.2), sine(44100, 2.2, 220.0)]))]
        ),
        write_wav_s16(tmp_path / "c.wav", sine(22050, 0.7), 22050),
        write_media(tmp_path / "d.mka", [("mp3", 48000, np.stack([sine(48000, 1.9)]))]),
    ]


def read(sources) -> list[list[np.ndarray]]:  # type: ignore[no-untyped-def]
    return [list(chunks) for chunks in sources]


def same(got: list[list[np.ndarray]], want: list[list[np.ndarray]]) -> bool:
    return [len(c) for c in got] == [len(c) for c in want] and all(
        np.array_equal(a, b) for g, w in zip(got, want, strict=True) for a, b in zip(g, w, strict=True)
    )


def test_files_decoded_ahead_give_the_chunks_iter_audio_gives(tmp_path: Path) -> None:
    paths = folder(tmp_path)
    want = read(iter_audio(p, chunk_seconds=0.5) for p in paths)
    assert sum(len(c) for c in want) > 4  # several chunks a file
    got = read(prefetch.decoded_ahead(paths, chunk_seconds=0.5, workers=2))
    assert same(got, want)
    assert same(read(prefetch.decoded_ahead(paths, chunk_seconds=0.5, workers=0)), want)


def test_long_files_and_files_without_a_duration_are_streamed_in_turn(tmp_path: Path, monkeypatch) -> None:
    """Past WHOLE_FILE_SECONDS (by the container), a file is read by `iter_audio` when reached."""
    paths = folder(tmp_path)
    monkeypatch.setattr(prefetch, "WHOLE_FILE_SECONDS", 2.0)  # a.wav (3 s) and b.flac (2.2 s) stream
    sources = prefetch.decoded_ahead(paths, chunk_seconds=0.5, workers=2)
    kinds, got = [], []
    for chunks in sources:
        kinds.append(chunks.gi_code.co_name)  # type: ignore[attr-defined]
        got.append(list(chunks))
    assert kinds == ["iter_audio", "iter_audio", "_read", "_read"]
    assert same(got, read(iter_audio(p, chunk_seconds=0.5) for p in paths))


@pytest.mark.parametrize("case", ["random_bytes", "truncated", "zero_samples", "missing"])
def test_a_bad_file_raises_its_error_when_read_and_the_next_files_still_come(
    tmp_path: Path, case: str
) -> None:
    make, expected = ERROR_CASES[case]
    good = folder(tmp_path)
    bad = make(tmp_path)
    paths = [good[0], bad, good[2]]
    with pytest.raises(AudioError) as direct:
        list(iter_audio(bad))
    sources = prefetch.decoded_ahead(paths, workers=2)
    first = list(next(sources))
    with pytest.raises(AudioError) as ahead:
        list(next(sources))  # these files state no duration: read in turn, by iter_audio
    assert str(ahead.value) == str(direct.value) and expected in str(ahead.value)
    last = list(next(sources))
    assert same([first, last], [list(iter_audio(good[0])), list(iter_audio(good[2]))])
    with pytest.raises(StopIteration):
        next(sources)


def test_a_file_that_states_its_duration_but_will_not_decode(tmp_path: Path) -> None:
    """Decoded ahead (its header says 2 s), the file's AudioError comes back from the worker
    process when its chunks are read, with iter_audio's message; the files around it still come."""
    good = folder(tmp_path)
    header = write_media(tmp_path / "g.flac", [("flac", SR, np.stack([sine(SR, 2.0)]))]).read_bytes()[:300]
    bad = tmp_path / "bad.flac"
    bad.write_bytes(header + np.random.default_rng(0).bytes(20_000))  # STREAMINFO, then noise
    with pytest.raises(AudioError) as direct:
        list(iter_audio(bad))
    sources = prefetch.decoded_ahead([good[2], bad, good[3]], workers=2)
    first, chunks = list(next(sources)), next(sources)
    assert chunks.gi_code.co_name == "_read"  # type: ignore[attr-defined]
    with pytest.raises(AudioError) as ahead:
        list(chunks)
    assert str(ahead.value) == str(direct.value) and str(bad) in str(ahead.value)
    assert same([first, list(next(sources))], [list(iter_audio(good[2])), list(iter_audio(good[3]))])


def test_a_workers_error_or_death_when_its_file_is_read(tmp_path: Path) -> None:
    """What a worker raises comes back through its future (AudioError survives the trip between
    processes); a pool that lost its worker leaves the file to `iter_audio` in this process."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    path = folder(tmp_path)[2]
    sent = pickle.loads(pickle.dumps(AudioError(f"cannot decode {path}: Invalid data")))
    assert isinstance(sent, AudioError) and str(sent) == f"cannot decode {path}: Invalid data"
    failed: Future[np.ndarray] = Future()
    failed.set_exception(sent)
    with pytest.raises(AudioError, match="Invalid data"):
        list(prefetch._read(failed, path, 0.5))
    broken: Future[np.ndarray] = Future()
    broken.set_exception(BrokenProcessPool("a worker was killed"))
    assert same([list(prefetch._read(broken, path, 0.5))], [list(iter_audio(path, 0.5))])


def test_closed_early_the_files_handed_out_can_still_be_read(tmp_path: Path) -> None:
    """Closing the generator stops the pool and cancels the decodes not started; a file already
    handed out whose decode was cancelled is read in this process instead."""
    paths = folder(tmp_path)
    sources = prefetch.decoded_ahead(paths, chunk_seconds=0.5, workers=1)
    first, second = next(sources), next(sources)
    sources.close()
    assert same([list(first), list(second)], [list(iter_audio(p, chunk_seconds=0.5)) for p in paths[:2]])


def test_workers_leave_ctrl_c_to_the_main_process() -> None:
    """Ctrl-C reaches the whole process group; a worker ignores it (no traceback per worker)."""
    import signal

    before = signal.getsignal(signal.SIGINT)
    try:
        prefetch._quiet_worker()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
