"""Where the time of one streaming step goes (device machine): graph replay timing + a profile.

    python bench/profile_step.py [int4|triton|mma] [--unfused] [--no-pdl] [--rows N]

Captures the step (with the Triton fusions of kernels/fused.py; also without them given
--unfused; also without programmatic dependent launch given --no-pdl, kernels/pdl.py) and
prints the bare replay time and the kernels per step; then a profile of ten fed steps, by
kernel (the `--rows` kernels with the most CUDA time, 30 unless given).
"""

from __future__ import annotations

import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from voxtral_desktop.benchmark import noise, random_q4_tensors
from voxtral_desktop.config import SAMPLES_PER_TOKEN, ModelConfig, StreamConfig
from voxtral_desktop.engine.session import StreamingSession
from voxtral_desktop.engine.tokenizer import TekkenTokenizer
from voxtral_desktop.kernels import fused, pdl
from voxtral_desktop.kernels.int4pack import CudaInt4Backend
from voxtral_desktop.kernels.mma_q4 import CudaMmaQ4Backend
from voxtral_desktop.kernels.triton_q4 import TritonQ4Backend
from voxtral_desktop.model.build import build_model
from voxtral_desktop.synthetic.tekken import build_tekken_json

dev = torch.device("cuda")
config = ModelConfig()
tensors = random_q4_tensors(config)
args = sys.argv[1:]
backend = (
    TritonQ4Backend() if "triton" in args else CudaMmaQ4Backend() if "mma" in args else CudaInt4Backend()
)
model = build_model(config, tensors, device=dev, dtype=torch.bfloat16, q4_backend=backend, fuse=True)
print(f"Q4 kernel: {backend.name}")
tok = TekkenTokenizer.from_dict(build_tekken_json(2000))
audio = noise(30.0)


def measure(use_fused: bool, use_pdl: bool = True) -> StreamingSession:
    fused.ENABLED, pdl.ENABLED = use_fused, use_pdl
    session = StreamingSession(model, tok, StreamConfig(480), cuda_graphs=True)
    for i in range(0, 100 * SAMPLES_PER_TOKEN, SAMPLES_PER_TOKEN):
        session.feed(audio[i : i + SAMPLES_PER_TOKEN])
    graph = session.graph
    g = graph.graphs[graph.bucket_for(session.state.decoder.cache.next_pos)]
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(100):
        g.replay()
    end.record()
    torch.cuda.synchronize()
    label = ("fused" if use_fused else "unfused") + (", PDL" if use_pdl and pdl.enabled(dev) else "")
    print(f"[{label}] bare graph replay: {start.elapsed_time(end) / 100:.3f} ms (GPU time)")
    t0 = time.perf_counter()
    for _ in range(100):
        g.replay()
        torch.cuda.synchronize()
    print(f"[{label}] bare graph replay + sync: {(time.perf_counter() - t0) * 10:.3f} ms (wall)")
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(10):
            g.replay()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    print(f"[{label}] kernels per step: {len(kernels) / 10:.0f}")
    return session


if "--unfused" in sys.argv:
    session = measure(False)
    del session
if "--no-pdl" in sys.argv:
    session = measure(True, use_pdl=False)
    del session
session = measure(True)
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    for i in range(100 * SAMPLES_PER_TOKEN, 110 * SAMPLES_PER_TOKEN, SAMPLES_PER_TOKEN):
        session.feed(audio[i : i + SAMPLES_PER_TOKEN])
    torch.cuda.synchronize()
rows = int(args[args.index("--rows") + 1]) if "--rows" in args else 30
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=rows, max_name_column_width=70))
