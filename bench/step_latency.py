"""Where a fed streaming step's time goes outside the GPU's own work (device machine).

    python bench/step_latency.py [--steps 300]

Prints, on the full-size random model (mma Q4 kernel, CUDA graphs):
- the step graph's replay back to back (GPU time) against one replay and a sync (launch and
  wake-up latency included), and the host time of the `replay()` call itself;
- the same for two plain graphs, one kernel and 600 tiny kernels, so the launch latency's
  dependence on the node count shows;
- a fed step cut into its host parts: the samples' push, taking a position's samples, the
  graph's run (input copy, replay), the token's read-back (waits for the GPU), the token's text;
- the log-mel of 80 ms in torch (as landed) and in numpy;

The seventeenth session ran it before and after the log-mel moved into the step's graph (the
version for the earlier code had an A/B of session variants; see bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from full_model import full_size_model

from voxtral_desktop.audio import mel as mel_module
from voxtral_desktop.benchmark import noise
from voxtral_desktop.config import SAMPLES_PER_TOKEN, StreamConfig
from voxtral_desktop.device import host_threads_for
from voxtral_desktop.engine.session import StreamingSession

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=300)
parser.add_argument("--sched", choices=["auto", "spin", "yield", "blocking"], default="auto")
parser.add_argument("--skip", default="", help="comma-separated parts to leave out: plain,mel,parts")
args = parser.parse_args()
torch.set_num_threads(host_threads_for(torch.device("cuda")))
if args.sched != "auto":  # the context's wait mode (cuCtxSetFlags, CUDA 12.1+)
    import ctypes

    torch.zeros(1, device="cuda")
    libcuda = ctypes.CDLL("libcuda.so.1")
    flags = ctypes.c_uint(0)
    assert libcuda.cuCtxGetFlags(ctypes.byref(flags)) == 0
    mode = {"spin": 1, "yield": 2, "blocking": 4}[args.sched]
    assert libcuda.cuCtxSetFlags(ctypes.c_uint((flags.value & ~0x7) | mode)) == 0
    print(f"context scheduling: {args.sched}", flush=True)


def median_us(samples: list[float]) -> str:
    a = np.asarray(samples) * 1e6
    return f"p50 {np.percentile(a, 50):7.1f} us, p95 {np.percentile(a, 95):7.1f} us"


def graph_latency(label: str, replay: Callable[[], None], n: int = 200) -> None:
    """Back-to-back replays (GPU time) against one replay + sync, and the launch call's host time."""
    torch.cuda.synchronize()
    for _ in range(10):
        replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(n):
        replay()
    end.record()
    torch.cuda.synchronize()
    b2b = start.elapsed_time(end) / n * 1e3
    calls, walls, gpu = [], [], []
    for _ in range(n):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        start.record()
        replay()
        t1 = time.perf_counter()
        end.record()
        end.synchronize()
        t2 = time.perf_counter()
        calls.append(t1 - t0)
        walls.append(t2 - t0)
        gpu.append(start.elapsed_time(end) * 1e-3)
    print(f"{label:34s} back to back {b2b:7.1f} us a replay", flush=True)
    print(f"{'':34s} one replay + sync  {median_us(walls)}", flush=True)
    print(f"{'':34s} events around one  {median_us(gpu)}", flush=True)
    print(f"{'':34s} replay() call      {median_us(calls)}", flush=True)


def plain_graphs() -> None:
    x = torch.zeros(1, device="cuda")
    for count in (1, 600):
        g = torch.cuda.CUDAGraph()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            x.add_(1)
            with torch.cuda.graph(g, stream=s):
                for _ in range(count):
                    x.add_(1)
        torch.cuda.current_stream().wait_stream(s)
        graph_latency(f"graph of {count} tiny kernels", g.replay)


def mel_variants() -> None:
    window, filters = (t.numpy() for t in mel_module._torch_constants())

    def numpy_mel(segment: np.ndarray, n: int) -> np.ndarray:
        frames = np.lib.stride_tricks.as_strided(segment, (n, 400), (640, 4))
        power = np.abs(np.fft.rfft(frames * window, axis=-1)).astype(np.float32) ** 2
        log_spec = np.log10(np.maximum(filters @ power.T, 1e-10))
        return (np.maximum(log_spec, 1.5 - 8.0) + 4.0) / 4.0

    seg = noise(1.0)[: 7 * 160 + 400].copy()

    def torch_mel(segment: np.ndarray, n: int) -> np.ndarray:
        return mel_module.frames_to_log_mel(torch.from_numpy(segment), n).numpy()

    a, b = torch_mel(seg, 8), numpy_mel(seg, 8)
    for label, fn in (
        ("torch", lambda: torch_mel(seg, 8)),
        ("numpy", lambda: numpy_mel(seg, 8)),
    ):
        for _ in range(50):
            fn()
        times = []
        for _ in range(1000):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        print(f"log-mel of 8 frames, {label:5s}          {median_us(times)}", flush=True)
    print(f"{'':34s} numpy - torch: max |diff| {np.abs(a - b).max():.2e}", flush=True)


def fed_step_parts(session: StreamingSession, chunks: list[np.ndarray]) -> None:
    """The single-position graph path of `StreamingSession._advance`, timed part by part."""
    st = session.state
    graph = session.graph
    assert graph is not None
    names = ("push", "take", "graph run", "token back", "text", "all")
    parts: dict[str, list[float]] = {k: [] for k in names}
    with torch.no_grad():
        for c in chunks:
            t0 = time.perf_counter()
            assert st.mel.push(c) // 8 == 1
            t1 = time.perf_counter()
            samples = st.mel.take(8)[None]
            t2 = time.perf_counter()
            graph.run(samples, None)
            t3 = time.perf_counter()
            token = graph.tokens_on_host()[0]
            t4 = time.perf_counter()
            st.n_embedded += 1
            st.n_decoded += 1
            session._emit(token, step=st.n_decoded - 1)
            t5 = time.perf_counter()
            for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0), strict=True):
                parts[k].append(v)
    for k, v in parts.items():
        print(f"fed step part: {k:19s} {median_us(v)}", flush=True)


def main() -> None:
    skip = set(args.skip.split(","))
    if "plain" not in skip:
        plain_graphs()
    if "mel" not in skip:
        mel_variants()
    model, tok = full_size_model()
    audio = noise(120.0)
    chunks = [audio[i : i + SAMPLES_PER_TOKEN] for i in range(0, len(audio), SAMPLES_PER_TOKEN)]
    session = StreamingSession(model, tok, StreamConfig(480), cuda_graphs=True)
    for c in chunks[:100]:
        session.feed(c)
    torch.cuda.synchronize()
    n = args.steps
    times = []
    with torch.no_grad():
        for c in chunks[100 : 100 + n]:
            t0 = time.perf_counter()
            session.feed(c)
            times.append(time.perf_counter() - t0)
    print(f"session.feed (80 ms)               {median_us(times)}", flush=True)
    if "parts" not in skip:
        fed_step_parts(session, chunks[100 + n : 100 + 2 * n])
    times = []
    with torch.no_grad():
        for c in chunks[100 + 2 * n : 100 + 3 * n]:
            t0 = time.perf_counter()
            session.feed(c)
            times.append(time.perf_counter() - t0)
    print(f"session.feed again                 {median_us(times)}", flush=True)
    graph = session.graph
    assert graph is not None
    g = graph.graphs[graph.bucket_for(st_pos := session.state.decoder.cache.next_pos)]
    print(f"(replays at decoder position {st_pos})", flush=True)
    graph_latency("the step graph", g.replay)


if __name__ == "__main__":
    main()
