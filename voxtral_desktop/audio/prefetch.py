"""A folder's files decoded ahead in worker processes while the model transcribes.

On a fast GPU a folder of compressed files is bound by decoding, not by the model. One core
decodes about 800 s of MP3 a second to 16 kHz mono (this project's 2-core CI machine), so 256
one-minute files take ~20 s, against ~10 s for an H200 to transcribe them. PyAV holds the GIL
while it decodes (two threads decoding took twice as long as one here), so the files go to
processes. Each decodes whole files; the main process reads them in order.

`decoded_ahead(paths)` yields, in order, each path's chunks as `iter_audio` would: the same
samples, in pieces of `chunk_seconds`, and the same `AudioError` for a file that cannot be
read, raised when its chunks are read. Memory stays bounded:
- Only files whose container states a duration of at most `WHOLE_FILE_SECONDS` are decoded
  ahead. Longer files, and files whose duration is unknown, are streamed by `iter_audio` when
  their turn comes. (The cap trusts the stated duration; a header that understates it, as a
  VBR MP3's estimate may, lets a worker decode a longer file whole.)
- At most `2 x workers` files and `AHEAD_SECONDS` of audio are decoded ahead, besides the
  files the reader holds (the folder path reads one file ahead of the one it cuts).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Generator, Iterable, Iterator, Sequence
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from voxtral_desktop.audio.decode import DEFAULT_CHUNK_SECONDS, iter_audio, load_audio, metadata_duration
from voxtral_desktop.config import SAMPLE_RATE

log = logging.getLogger(__name__)

WHOLE_FILE_SECONDS = 600.0  # a decoded 10-minute file holds 38 MB
AHEAD_SECONDS = 3600.0  # an hour of audio decoded ahead: 230 MB at most
MAX_WORKERS = 8


def default_workers() -> int:
    """Worker processes: the cores this process may use but one (the model's thread keeps one),
    at most 8."""
    counter = getattr(os, "process_cpu_count", None)  # Python 3.13: affinity-aware
    if counter is not None:
        cores = counter()
    elif hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count()
    return max(0, min(MAX_WORKERS, (cores or 1) - 1))


def _quiet_worker() -> None:
    """Ctrl-C reaches the whole process group: the main process stops the run; a worker would
    only print a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _decode_whole(path: str) -> np.ndarray:
    """A worker's job: the whole file, as `load_audio` gives it."""
    return load_audio(path)


def _chunks(audio: np.ndarray, chunk_seconds: float) -> Iterator[np.ndarray]:
    size = max(1, round(chunk_seconds * SAMPLE_RATE))
    for i in range(0, len(audio), size):
        yield audio[i : i + size]


def _read(future: Future[np.ndarray], path: Path, chunk_seconds: float) -> Iterator[np.ndarray]:
    try:
        audio = future.result()
    except (BrokenProcessPool, CancelledError):  # a worker died (killed, out of memory), or the
        # pool stopped before it ran: decode it here instead
        log.warning("%s was not decoded ahead; decoding it in this process", path)
        yield from iter_audio(path, chunk_seconds)
        return
    yield from _chunks(audio, chunk_seconds)


def decoded_ahead(
    paths: Sequence[str | os.PathLike[str]],
    *,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    workers: int | None = None,
) -> Generator[Iterable[np.ndarray], None, None]:
    """For each of `paths` in order, an iterable of its float32 16 kHz mono chunks (see the
    module's docstring). With no worker (one core, or `workers=0`) or a single file, every file
    is streamed by `iter_audio`. Closed early, the generator cancels the decodes not started;
    exhausted, it lets the started ones finish for the files already handed out."""
    files = [Path(p) for p in paths]
    n_workers = default_workers() if workers is None else workers
    if n_workers < 1 or len(files) < 2:
        for path in files:
            yield iter_audio(path, chunk_seconds)
        return
    import multiprocessing

    # spawn, not fork: the parent holds CUDA and Qt state a forked child must not inherit
    pool = ProcessPoolExecutor(
        n_workers, mp_context=multiprocessing.get_context("spawn"), initializer=_quiet_worker
    )
    futures: dict[int, tuple[Future[np.ndarray], float]] = {}  # decoding ahead: (job, seconds)
    queued = 0  # files considered for decoding ahead so far
    prefetching, finished = True, False
    try:
        for index, path in enumerate(files):
            queued = max(queued, index)
            while prefetching and queued < len(files) and len(futures) < 2 * n_workers:
                # The container's stated duration (nothing is decoded for it), read as each file
                # comes up, so a large folder starts at once.
                seconds = metadata_duration(files[queued])
                if seconds is None or seconds > WHOLE_FILE_SECONDS:  # streamed in turn
                    queued += 1
                    continue
                if futures and sum(s for _, s in futures.values()) + seconds > AHEAD_SECONDS:
                    break  # considered again once earlier files are taken
                try:
                    futures[queued] = (pool.submit(_decode_whole, str(files[queued])), seconds)
                except (BrokenProcessPool, RuntimeError, OSError) as e:  # no workers to be had
                    log.warning("decoding files ahead stopped (%s); the rest are read in turn", e)
                    prefetching = False
                queued += 1
            job = futures.pop(index, None)
            yield iter_audio(path, chunk_seconds) if job is None else _read(job[0], path, chunk_seconds)
        finished = True
    finally:
        pool.shutdown(wait=False, cancel_futures=not finished)
