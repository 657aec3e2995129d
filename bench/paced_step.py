"""A live step at a microphone's pace on the GPU, against PyTorch's CPU thread count (device machine).

    python bench/paced_step.py [--steps 250] [--threads 1,16]

The bench times `StreamingSession.feed` back to back. A live session feeds 80 ms once every
80 ms, and between feeds the GPU, the CPU threads and the clocks may go idle. For each thread
count (alternating), this feeds a full-size random Q4 model (mma kernel, CUDA graphs, the
bench's session) 100 steps back to back to warm it, then `--steps` steps on an 80 ms clock,
and prints the feed times' p50 / p95 / p99 / max next to the same session fed back to back.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from full_model import full_size_model

from voxtral_desktop.benchmark import noise
from voxtral_desktop.config import SAMPLES_PER_TOKEN, StreamConfig
from voxtral_desktop.engine.session import StreamingSession

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=250)
parser.add_argument("--threads", default=f"1,{torch.get_num_threads()}")
args = parser.parse_args()

model, tok = full_size_model()
model.kv_int8 = True  # as the bench and the app have it on CUDA
audio = noise(100 * 0.08 + 2 * args.steps * 0.08 + 1.0)
chunks = [audio[i : i + SAMPLES_PER_TOKEN] for i in range(0, len(audio), SAMPLES_PER_TOKEN)]


def pct(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1e3
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return f"p50 {p50:.3f} p95 {p95:.3f} p99 {p99:.3f} max {ms.max():.3f} ms"


def run(threads: int) -> str:
    torch.set_num_threads(threads)
    session = StreamingSession(model, tok, StreamConfig(480), cuda_graphs=True)
    for c in chunks[:100]:
        session.feed(c)
    torch.cuda.synchronize()
    paced, back_to_back = [], []
    deadline = time.perf_counter()
    for c in chunks[100 : 100 + args.steps]:
        deadline += 0.080
        time.sleep(max(0.0, deadline - time.perf_counter()))
        t0 = time.perf_counter()
        session.feed(c)
        paced.append(time.perf_counter() - t0)
    for c in chunks[100 + args.steps : 100 + 2 * args.steps]:
        t0 = time.perf_counter()
        session.feed(c)
        back_to_back.append(time.perf_counter() - t0)
    return f"every 80 ms {pct(paced)}; back to back {pct(back_to_back)}"


for threads in [int(t) for t in args.threads.split(",")]:
    print(f"{threads} CPU threads: {run(threads)}", flush=True)
