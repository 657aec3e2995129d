"""The live log-mel at a microphone's pace, against PyTorch's CPU thread count (any machine).

    python bench/paced_mel.py [--pushes 120]

`LogMelStream.push` of 80 ms of audio once every 80 ms, as a live session does it, first with
PyTorch's own thread count, then with one, twice. Back to back (`bench/ab_host_threads.py`) a
pool of threads is still awake from the previous push; at the microphone's pace it has gone
to sleep and must be woken for every push.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from voxtral_desktop.audio.mel import LogMelStream
from voxtral_desktop.config import SAMPLES_PER_TOKEN

parser = argparse.ArgumentParser()
parser.add_argument("--pushes", type=int, default=120)
args = parser.parse_args()

audio = (0.1 * np.random.default_rng(0).standard_normal(SAMPLES_PER_TOKEN * args.pushes)).astype(np.float32)
default = torch.get_num_threads()
for threads in (default, 1, default, 1):
    torch.set_num_threads(threads)
    stream, times = LogMelStream(), []
    due = time.perf_counter()
    for i in range(args.pushes):
        due += 0.08
        time.sleep(max(0.0, due - time.perf_counter()))
        t0 = time.perf_counter()
        stream.push(audio[i * SAMPLES_PER_TOKEN : (i + 1) * SAMPLES_PER_TOKEN])
        times.append(time.perf_counter() - t0)
    ms = np.array(times[20:]) * 1e3
    print(
        f"{threads} thread(s), one push per 80 ms: p50 {np.percentile(ms, 50):.3f} "
        f"p95 {np.percentile(ms, 95):.3f} max {ms.max():.3f} ms",
        flush=True,
    )
