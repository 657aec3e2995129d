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
import time

import numpy as np
import torch

from voxtral_desktop.benchmark import noise, random_q4_tensors
from voxtral_desktop.config import SAMPLES_PER_TOKEN, ModelConfig, StreamConfig
from voxtral_desktop.engine.session import StreamingSession
from voxtral_desktop.engine.tokenizer import TekkenTokenizer
from voxtral_desktop.kernels.mma_q4 import CudaMmaQ4Backend
from voxtral_desktop.model.build import build_model
from voxtral_desktop.synthetic.tekken import build_tekken_json

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=250)
parser.add_argument("--threads", default=f"1,{torch.get_num_threads()}")
args = parser.parse_args()

dev = torch.device("cuda")
config = ModelConfig()
model = build_model(
    config,
    random_q4_tensors(config),
    device=dev,
    dtype=torch.bfloat16,
    q4_backend=CudaMmaQ4Backend(),
    fuse=True,
)
model.kv_int8 = True
tok = TekkenTokenizer.from_dict(build_tekken_json(2000))
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
