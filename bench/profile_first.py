"""The feed that completes the prompt and emits the first token (device machine), per Q4 kernel.

    python bench/profile_first.py [int4 mma ...]

For each kernel: the full-size random model, a streaming session with CUDA graphs, the first
token's feed timed 5 times (session reset between), then a profile of one such feed (host and
GPU time by op).
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
from voxtral_desktop.kernels.select import choose_q4_backend
from voxtral_desktop.model.build import build_model
from voxtral_desktop.synthetic.tekken import build_tekken_json

dev = torch.device("cuda")
config = ModelConfig()
tensors = random_q4_tensors(config)
tok = TekkenTokenizer.from_dict(build_tekken_json(2000))
audio = noise(10.0, seed=1)


def first_token_feed(session: StreamingSession, prof=None) -> float:
    """Feed 80 ms chunks until the first token; return the time of that feed (ms)."""
    session.reset()
    n_prompt = session.config.n_prompt_tokens
    for i in range(0, len(audio) - SAMPLES_PER_TOKEN, SAMPLES_PER_TOKEN):
        chunk = audio[i : i + SAMPLES_PER_TOKEN]
        before = session.state.n_decoded
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        if prof is not None and before == n_prompt - 1:
            with prof:
                session.feed(chunk)
        else:
            session.feed(chunk)
        torch.cuda.synchronize()
        if before < n_prompt <= session.state.n_decoded:  # the feed that emits the first token
            return (time.perf_counter() - t0) * 1e3
    raise RuntimeError("no token")


for kernel in sys.argv[1:] or ["int4", "mma"]:
    backend = choose_q4_backend(dev, kernel)
    model = build_model(config, tensors, device=dev, dtype=torch.bfloat16, q4_backend=backend, fuse=True)
    session = StreamingSession(model, tok, StreamConfig(480), cuda_graphs=True)
    times = [first_token_feed(session) for _ in range(5)]
    print(f"{backend.name}: first-token feed {', '.join(f'{t:.1f}' for t in times)} ms", flush=True)
    prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])
    first_token_feed(session, prof)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=60))
    print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=8, max_name_column_width=60))
    del model, session
    torch.cuda.empty_cache()
