"""Where the time of a folder batch goes (device machine): encoder phase, decoder phase, kernels.

    python bench/profile_batch.py [BATCH] [SECONDS] [dense|int4]

Times `BatchDecoder.transcribe` on BATCH random-noise files of SECONDS each with a full-size
random model (dense bf16 weights by default, as the bench's folder batch), split into its
encoder phase and its decoder phase, then prints a profile by kernel.
"""

from __future__ import annotations

import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from voxtral_desktop.benchmark import noise, random_q4_tensors
from voxtral_desktop.config import ModelConfig, StreamConfig
from voxtral_desktop.engine.batch import BatchDecoder
from voxtral_desktop.engine.tokenizer import TekkenTokenizer
from voxtral_desktop.kernels.int4pack import CudaInt4Backend
from voxtral_desktop.model.build import build_model
from voxtral_desktop.synthetic.tekken import build_tekken_json

batch = int(sys.argv[1]) if len(sys.argv) > 1 else 64
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
backend = CudaInt4Backend() if "int4" in sys.argv[3:] else None
dev = torch.device("cuda")
config = ModelConfig()
model = build_model(
    config, random_q4_tensors(config), device=dev, dtype=torch.bfloat16, q4_backend=backend, fuse=True
)
tok = TekkenTokenizer.from_dict(build_tekken_json(2000))
decoder = BatchDecoder(model, tok, StreamConfig(480), batch=batch, max_seconds=seconds, cuda_graphs=True)
audios = [noise(seconds, seed=i) for i in range(batch)]
decoder.transcribe([a[:16000] for a in audios])  # warm-up

encode = decoder._encode
phase = {"encode": 0.0}


def timed_encode(*args, **kwargs):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = encode(*args, **kwargs)
    torch.cuda.synchronize()
    phase["encode"] += time.perf_counter() - t0
    return out


decoder._encode = timed_encode  # type: ignore[method-assign]
torch.cuda.synchronize()
t0 = time.perf_counter()
decoder.transcribe(audios)
torch.cuda.synchronize()
total = time.perf_counter() - t0
print(
    f"batch {batch} x {seconds:.0f} s ({'int4' if backend else 'dense bf16'}): {total:.2f} s = "
    f"{batch * seconds / total:.0f}x real time; encoder phase {phase['encode']:.2f} s, "
    f"decoder phase {total - phase['encode']:.2f} s"
)
with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
    decoder.transcribe(audios)
    torch.cuda.synchronize()
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=60))
print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=12, max_name_column_width=60))
