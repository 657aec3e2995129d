"""Programmatic dependent launch on and off in one process (device; kernels/pdl.py): the live
step, and a batch of file segments on the mma kernels.

    python bench/ab_pdl.py [--rounds 2] [--steps 300]

For each setting, in alternating rounds on one full-size random model (mma kernel):
- the streaming session's graph: GPU time of back-to-back replays, and the wall time of one
  replay followed by a sync (what a live step waits for);
- fed steps: p50 / p95 of `session.feed` on 80 ms of audio;
- a `BatchDecoder` of 8 rows on 8 x 30 s (a long file's segments): wall seconds.
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

from voxtral_desktop.benchmark import noise
from voxtral_desktop.config import SAMPLES_PER_TOKEN, StreamConfig
from voxtral_desktop.engine.batch import BatchDecoder
from voxtral_desktop.kernels import pdl

parser = argparse.ArgumentParser()
parser.add_argument("--rounds", type=int, default=2)
parser.add_argument("--steps", type=int, default=300)
args = parser.parse_args()

dev = torch.device("cuda")
model, tok = full_size_model()
audio = noise(60.0)
segments = [noise(30.0, seed=i) for i in range(8)]
print(f"PDL available: {pdl.enabled(dev)}")


def live(label: str) -> None:
    chunks = [audio[i : i + SAMPLES_PER_TOKEN] for i in range(0, len(audio), SAMPLES_PER_TOKEN)]
    session, times = fed_steps(model, tok, chunks, args.steps)
    assert session.graph is not None
    g = session.graph.graphs[session.graph.bucket_for(session.state.decoder.cache.next_pos)]
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(200):
        g.replay()
    end.record()
    torch.cuda.synchronize()
    gpu = start.elapsed_time(end) / 200
    t0 = time.perf_counter()
    for _ in range(200):
        g.replay()
        torch.cuda.synchronize()
    isolated = (time.perf_counter() - t0) / 200 * 1e3
    ms = np.array(times) * 1e3
    print(
        f"{label}: fed step p50 {np.percentile(ms, 50):.3f} p95 {np.percentile(ms, 95):.3f} ms;"
        f" replay GPU {gpu:.3f} ms back to back, {isolated:.3f} ms wall with a sync each",
        flush=True,
    )


def batch(label: str) -> None:
    decoder = BatchDecoder(model, tok, StreamConfig(480), batch=8, max_seconds=30.0, cuda_graphs=True)
    decoder.transcribe([s[:32000] for s in segments])  # warm-up and capture
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    decoder.transcribe(segments)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    print(f"{label}: 8 x 30 s segments in {seconds:.3f} s ({240 / seconds:.1f}x real time)", flush=True)


for r in range(args.rounds):
    for use in (False, True):
        pdl.ENABLED = use
        label = f"round {r + 1}, PDL {'on' if use and pdl.enabled(dev) else 'off'}"
        live(label)
        batch(label)
