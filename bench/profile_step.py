"""Where the time of one streaming step goes (device machine): graph replay timing + a profile."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from voxtral_desktop.benchmark import noise, random_q4_tensors
from voxtral_desktop.config import SAMPLES_PER_TOKEN, ModelConfig, StreamConfig
from voxtral_desktop.engine.session import StreamingSession
from voxtral_desktop.engine.tokenizer import TekkenTokenizer
from voxtral_desktop.kernels.int4pack import CudaInt4Backend
from voxtral_desktop.model.build import build_model
from voxtral_desktop.synthetic.tekken import build_tekken_json

dev = torch.device("cuda")
config = ModelConfig()
tensors = random_q4_tensors(config)
model = build_model(config, tensors, device=dev, dtype=torch.bfloat16, q4_backend=CudaInt4Backend(), fuse=True)
tok = TekkenTokenizer.from_dict(build_tekken_json(2000))
session = StreamingSession(model, tok, StreamConfig(480), cuda_graphs=True)
audio = noise(30.0)
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
print(f"bare graph replay: {start.elapsed_time(end) / 100:.3f} ms (GPU time)")
t0 = time.perf_counter()
for _ in range(100):
    g.replay()
    torch.cuda.synchronize()
print(f"bare graph replay + sync: {(time.perf_counter() - t0) * 10:.3f} ms (wall)")

with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    for i in range(100 * SAMPLES_PER_TOKEN, 110 * SAMPLES_PER_TOKEN, SAMPLES_PER_TOKEN):
        session.feed(audio[i : i + SAMPLES_PER_TOKEN])
    torch.cuda.synchronize()
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=70))
print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=15, max_name_column_width=70))

# Eager decoder step and encoder chunk for comparison
from voxtral_desktop.model.decoder import DecoderState
from voxtral_desktop.model.encoder import EncoderState

enc = EncoderState.allocate(config.encoder, batch=1, max_chunk_frames=4, device=dev, dtype=torch.bfloat16)
mel = torch.randn(1, 128, 8, device=dev, dtype=torch.bfloat16)
with torch.no_grad():
    for _ in range(3):
        model.embed_audio(mel, enc)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(20):
        model.embed_audio(mel, enc)
    torch.cuda.synchronize()
print(f"eager encoder step (4 frames): {(time.perf_counter() - t0) / 20 * 1e3:.2f} ms")
