"""Host time of a streaming step (device machine): cProfile over 300 fed 80 ms chunks with CUDA
graphs, next to the bare graph replay, to see what the step spends outside the GPU.

    python bench/profile_host.py [int4|mma]
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time

import torch

from voxtral_desktop.benchmark import noise, random_q4_tensors
from voxtral_desktop.config import SAMPLES_PER_TOKEN, ModelConfig, StreamConfig
from voxtral_desktop.engine.session import StreamingSession
from voxtral_desktop.engine.tokenizer import TekkenTokenizer
from voxtral_desktop.kernels.select import choose_q4_backend
from voxtral_desktop.model.build import build_model
from voxtral_desktop.synthetic.tekken import build_tekken_json

dev = torch.device("cuda")
backend = choose_q4_backend(dev, (sys.argv[1:] or ["auto"])[0])
model = build_model(
    ModelConfig(),
    random_q4_tensors(ModelConfig()),
    device=dev,
    dtype=torch.bfloat16,
    q4_backend=backend,
    fuse=True,
)
session = StreamingSession(
    model, TekkenTokenizer.from_dict(build_tekken_json(2000)), StreamConfig(480), cuda_graphs=True
)
audio = noise(60.0, seed=2)
chunks = [
    audio[i : i + SAMPLES_PER_TOKEN] for i in range(0, len(audio) - SAMPLES_PER_TOKEN, SAMPLES_PER_TOKEN)
]
for c in chunks[:100]:
    session.feed(c)
torch.cuda.synchronize()
t0 = time.perf_counter()
for c in chunks[100:400]:
    session.feed(c)
torch.cuda.synchronize()
print(f"{backend.name}: {(time.perf_counter() - t0) / 300 * 1e3:.3f} ms a fed step (wall)")
prof = cProfile.Profile()
prof.enable()
for c in chunks[400:700]:
    session.feed(c)
torch.cuda.synchronize()
prof.disable()
pstats.Stats(prof).sort_stats("tottime").print_stats(25)
