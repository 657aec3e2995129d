"""The host's share of a live step against PyTorch's CPU thread count (device machine).

    python bench/ab_host_threads.py [--rounds 2] [--steps 300] [--threads 16,1] [--files]

On a CUDA session the CPU runs only small ops per 80 ms step: the incremental log-mel (an STFT
of 8 frames, a 128 x 201 x 8 matmul) and a few copies. PyTorch gives CPU ops as many threads as
the machine has cores, and waking a pool of threads can cost more than such an op. For each
thread count, alternating: `LogMelStream.push` of 80 ms (p50 / p95), then fed steps of a
streaming session on the mma kernel (p50 / p95) next to one graph replay + sync. With
`--files`, the file paths instead: one 120 s file as one stream, the same file in segments of
<= 30 s x 8, and 64 files x 60 s through `transcribe_segmented_files` on 64 rows.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from full_model import fed_steps, full_size_model

from voxtral_desktop.audio.mel import LogMelStream
from voxtral_desktop.benchmark import noise
from voxtral_desktop.config import SAMPLE_RATE, SAMPLES_PER_TOKEN, StreamConfig
from voxtral_desktop.engine.batch import BatchDecoder
from voxtral_desktop.engine.long_file import transcribe_segmented, transcribe_segmented_files
from voxtral_desktop.engine.session import StreamingSession
from voxtral_desktop.engine.transcribe import transcribe_stream

parser = argparse.ArgumentParser()
parser.add_argument("--rounds", type=int, default=2)
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--threads", default=f"{torch.get_num_threads()},1")
parser.add_argument("--files", action="store_true")
args = parser.parse_args()

model, tok = full_size_model()
audio = noise(60.0)
chunks = [audio[i : i + SAMPLES_PER_TOKEN] for i in range(0, len(audio), SAMPLES_PER_TOKEN)]


def pct(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1e3
    return f"p50 {np.percentile(ms, 50):.3f} p95 {np.percentile(ms, 95):.3f} ms"


def mel_only() -> str:
    stream = LogMelStream()
    times = []
    for i, c in enumerate(chunks):
        t0 = time.perf_counter()
        stream.push(c)
        if i >= 50:
            times.append(time.perf_counter() - t0)
    return pct(times)


def live() -> str:
    session, times = fed_steps(model, tok, chunks, args.steps)
    assert session.graph is not None
    g = session.graph.graphs[session.graph.bucket_for(session.state.decoder.cache.next_pos)]
    t0 = time.perf_counter()
    for _ in range(200):
        g.replay()
        torch.cuda.synchronize()
    alone = (time.perf_counter() - t0) / 200 * 1e3
    return f"fed step {pct(times)}; one replay + sync {alone:.3f} ms"


class Clock:
    """Seconds of audio per second of wall time inside the block (GPU work included)."""

    def __init__(self, seconds_of_audio: float) -> None:
        self.audio, self.rate = seconds_of_audio, 0.0

    def __enter__(self) -> None:
        torch.cuda.synchronize()
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        torch.cuda.synchronize()
        self.rate = self.audio / (time.perf_counter() - self.t0)


def files() -> str:
    long = noise(120.0, seed=2)
    pieces = [long[i : i + 30 * SAMPLE_RATE] for i in range(0, len(long), 30 * SAMPLE_RATE)]
    one, seg, many = Clock(120.0), Clock(120.0), Clock(64 * 60.0)
    session = StreamingSession(model, tok, StreamConfig(480), cuda_graphs=True)
    with one:
        transcribe_stream(session, pieces)
    del session
    segments = BatchDecoder(model, tok, StreamConfig(480), batch=8, max_seconds=30.0, cuda_graphs=True)
    transcribe_segmented(segments, [long[: 3 * SAMPLE_RATE]], max_seconds=30.0)
    with seg:
        transcribe_segmented(segments, pieces, max_seconds=30.0, balance_tail=True)
    del segments
    rows = BatchDecoder(
        model, tok, StreamConfig(480), batch=64, max_seconds=30.0, cuda_graphs=True, dense=None
    )
    folder = [noise(60.0, seed=10 + i) for i in range(64)]
    list(transcribe_segmented_files(rows, [[a[: 2 * SAMPLE_RATE]] for a in folder], max_seconds=30.0))
    with many:
        list(transcribe_segmented_files(rows, [[a] for a in folder], max_seconds=30.0, balance_tail=True))
    del rows
    torch.cuda.empty_cache()
    return f"one stream {one.rate:.1f}x, segments {seg.rate:.1f}x, 64 files x 60 s {many.rate:.1f}x real time"


print(f"cores: {torch.get_num_threads()} torch threads by default", flush=True)
for r in range(args.rounds):
    for n in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(n)
        if args.files:
            print(f"round {r + 1}, {n} threads: {files()}", flush=True)
        else:
            print(f"round {r + 1}, {n} threads: log-mel push {mel_only()}; {live()}", flush=True)
