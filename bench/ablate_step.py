"""What each kind of small kernel costs the live step (device machine): the step's CUDA graph is
captured again with one kind of kernel left out, and its bare replay timed.

    python bench/ablate_step.py [--replays 200]

The outputs are wrong with a kernel left out (norms skipped, RoPE and the cache write skipped,
attention skipped); only the time of what is left is meant. The difference to the full step is
the most that folding those kernels into their neighbours could save. Also timed: the
decoder-only graph (the session's catch-up graph), so the encoder's share shows, and a fed step
(`session.feed` on 80 ms) next to one replay + sync, so the host's share shows.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(__file__))
from full_model import full_size_model

from voxtral_desktop.benchmark import noise
from voxtral_desktop.config import SAMPLES_PER_TOKEN, StreamConfig
from voxtral_desktop.engine.session import StreamingSession
from voxtral_desktop.kernels import fused
from voxtral_desktop.model import layers

parser = argparse.ArgumentParser()
parser.add_argument("--replays", type=int, default=200)
args = parser.parse_args()

model, tok = full_size_model()
audio = noise(30.0)
chunks = [audio[i : i + SAMPLES_PER_TOKEN] for i in range(0, len(audio), SAMPLES_PER_TOKEN)]


def replay_ms(g: torch.cuda.CUDAGraph) -> float:
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(args.replays):
        g.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / args.replays


def kernels_per_replay(g: torch.cuda.CUDAGraph) -> int:
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            g.replay()
        torch.cuda.synchronize()
    return round(sum(e.device_type == torch.autograd.DeviceType.CUDA for e in prof.events()) / 5)


def no_norm(stack: ExitStack) -> None:
    stack.enter_context(_patched(layers.RMSNorm, "forward", lambda self, x, scale=None: x))
    stack.enter_context(
        _patched(
            layers.RMSNorm,
            "add_forward",
            lambda self, x, residual, scale=None, residual_bias=None: (x, residual),
        )
    )


def no_rope(stack: ExitStack) -> None:
    def rope(qkv, rotations, slots, cache, n_heads, n_kv_heads, head_dim, bias=None):
        return torch.empty(qkv.shape[0], n_heads, qkv.shape[1], head_dim, dtype=qkv.dtype, device=qkv.device)

    stack.enter_context(_patched(fused, "rope_qkv_to_cache", rope))


def no_attention(stack: ExitStack) -> None:
    stack.enter_context(_patched(layers, "attend", lambda q, kv, mask, filled=None: q))


class _patched:
    def __init__(self, owner: object, name: str, value: Callable) -> None:
        self.owner, self.name, self.value = owner, name, value

    def __enter__(self) -> None:
        self.saved = getattr(self.owner, self.name)
        setattr(self.owner, self.name, self.value)

    def __exit__(self, *exc: object) -> None:
        setattr(self.owner, self.name, self.saved)


def run(label: str, *ablations: Callable[[ExitStack], None], fed: bool = False) -> None:
    with ExitStack() as stack:
        for ablate in ablations:
            ablate(stack)
        session = StreamingSession(model, tok, StreamConfig(480), cuda_graphs=True)
        for c in chunks[:100]:
            session.feed(c)
        assert session.graph is not None
        g = session.graph.graphs[session.graph.bucket_for(session.state.decoder.cache.next_pos)]
        line = f"{label:28s} step {replay_ms(g):.3f} ms GPU, {kernels_per_replay(g)} kernels"
        if session.bulk_graph is not None:
            bulk = session.bulk_graph
            d = bulk.graphs[bulk.bucket_for(bulk.decoder.cache.next_pos)]
            line += f"; decoder only {replay_ms(d):.3f} ms, {kernels_per_replay(d)} kernels"
        print(line, flush=True)
        if fed:
            times = []
            for c in chunks[100:300]:
                t0 = time.perf_counter()
                session.feed(c)
                times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            for _ in range(100):
                g.replay()
                torch.cuda.synchronize()
            alone = (time.perf_counter() - t0) * 10
            ms = np.array(times) * 1e3
            print(
                f"{'':28s} fed step p50 {np.percentile(ms, 50):.3f} p95 {np.percentile(ms, 95):.3f} ms;"
                f" one replay + sync {alone:.3f} ms",
                flush=True,
            )
        del session
        torch.cuda.empty_cache()


run("full step", fed=True)
run("without norms", no_norm)
run("without RoPE/cache", no_rope)
run("without attention", no_attention)
run("without norms, RoPE", no_norm, no_rope)
run("without norms, RoPE, attn", no_norm, no_rope, no_attention)
run("full step again")
