"""Where a fed streaming step's time goes outside the GPU's own work (device machine).

    python bench/step_latency.py [--steps 300]

Prints, on the full-size random model (mma Q4 kernel, CUDA graphs):
- the step graph's replay back to back (GPU time) against one replay and a sync (launch and
  wake-up latency included), and the host time of the `replay()` call itself;
- the same for two plain graphs, one kernel and 600 tiny kernels, so the launch latency's
  dependence on the node count shows;
- a fed step cut into its host parts: log-mel, the mel's copy to the device, the graph's run
  (input copy, replay), the token's read-back (waits for the GPU), the token's text;
- the log-mel of 80 ms in torch (as landed) and in numpy;
- an A/B of fed steps, interleaved: as landed; with the mel's copy in and the token's copy out
  inside the graph (pinned host buffers, no separate copies or read-back); that and the numpy
  log-mel.
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
from voxtral_desktop.engine import session as session_module
from voxtral_desktop.engine.session import StreamingSession
from voxtral_desktop.model.graph_step import GraphStep

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
    a, b = mel_module._frames_to_log_mel(seg, 8), numpy_mel(seg, 8)
    for label, fn in (
        ("torch", lambda: mel_module._frames_to_log_mel(seg, 8)),
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
    parts: dict[str, list[float]] = {
        k: [] for k in ("mel", "to device", "graph run", "token back", "text", "all")
    }
    with torch.no_grad():
        for c in chunks:
            t0 = time.perf_counter()
            frames = st.mel.push(c)
            st.mel_pending = np.concatenate([st.mel_pending, frames], axis=1)
            assert st.mel_pending.shape[1] // 8 == 1
            t1 = time.perf_counter()
            mel = session._pop_mel(1)
            t2 = time.perf_counter()
            out = graph.run(mel, None)
            t3 = time.perf_counter()
            token = int(out[0])
            t4 = time.perf_counter()
            st.n_embedded += 1
            st.n_decoded += 1
            session._emit(token, step=st.n_decoded - 1)
            t5 = time.perf_counter()
            for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0), strict=True):
                parts[k].append(v)
    for k, v in parts.items():
        print(f"fed step part: {k:19s} {median_us(v)}", flush=True)


class PinnedIOStep(GraphStep):
    """The step graph with its I/O inside: the mel is copied in from a pinned host buffer and the
    token out to one, as memcpy nodes of the graph."""

    def __init__(self, model, encoder, decoder, **kw) -> None:  # type: ignore[no-untyped-def]
        n_mels = model.config.encoder.n_mels
        self.mel_host = torch.zeros(1, n_mels, 8, dtype=torch.float32, pin_memory=True)
        self.mel_staging = torch.zeros(1, n_mels, 8, dtype=torch.float32, device=model.device)
        self.token_host = torch.zeros(1, dtype=torch.long, pin_memory=True)
        super().__init__(model, encoder, decoder, **kw)

    def _body(self) -> None:
        if self.encoder is None:
            return super()._body()
        self.mel_staging.copy_(self.mel_host, non_blocking=True)
        self.mel.copy_(self.mel_staging)
        super()._body()
        self.token_host.copy_(self.next_token, non_blocking=True)


class PinnedSession(StreamingSession):
    def __init__(self, *a, **kw) -> None:  # type: ignore[no-untyped-def]
        session_module.GraphStep = PinnedIOStep  # type: ignore[misc]
        try:
            super().__init__(*a, **kw)
        finally:
            session_module.GraphStep = GraphStep  # type: ignore[misc]
        assert isinstance(self.graph, PinnedIOStep)

    def _graph_step(self):  # type: ignore[no-untyped-def]
        st = self.state
        g = self.graph
        assert isinstance(g, PinnedIOStep)
        frames, st.mel_pending = st.mel_pending[:, :8], st.mel_pending[:, 8:]
        np.copyto(g.mel_host.numpy()[0], frames)
        if st.n_decoded == self.config.n_prompt_tokens:
            g.token.fill_(st.last_token)
        g.graphs[g.bucket_for(g.decoder.cache.next_pos)].replay()
        assert g.encoder is not None
        g.encoder.cache.advance_host(4)
        g.decoder.cache.advance_host(1)
        torch.cuda.current_stream().synchronize()
        token = int(g.token_host[0])
        st.n_embedded += 1
        st.n_decoded += 1
        return self._emit(token, step=st.n_decoded - 1)


def numpy_log_mel(segment: np.ndarray, n_frames: int) -> np.ndarray:
    window, filters = (t.numpy() for t in mel_module._torch_constants())
    frames = np.lib.stride_tricks.as_strided(segment, (n_frames, 400), (640, 4))
    power = np.abs(np.fft.rfft(frames * window, axis=-1)).astype(np.float32) ** 2
    log_spec = np.log10(np.maximum(filters @ power.T, 1e-10))
    return ((np.maximum(log_spec, 1.5 - 8.0) + 4.0) / 4.0).astype(np.float32)


def ab_fed(model, tok, chunks: list[np.ndarray]) -> None:  # type: ignore[no-untyped-def]
    landed = StreamingSession(model, tok, StreamConfig(480), cuda_graphs=True)
    pinned = PinnedSession(model, tok, StreamConfig(480), cuda_graphs=True)
    pinned_np = PinnedSession(model, tok, StreamConfig(480), cuda_graphs=True)
    torch_mel = mel_module._frames_to_log_mel
    arms = (("as landed", landed, torch_mel), ("I/O in the graph", pinned, torch_mel),
            ("I/O in the graph + numpy mel", pinned_np, numpy_log_mel))  # fmt: skip
    tokens: dict[str, list[int]] = {a[0]: [] for a in arms}
    times: dict[str, list[float]] = {a[0]: [] for a in arms}
    for label, s, fn in arms:
        mel_module._frames_to_log_mel = fn
        for c in chunks[:100]:
            tokens[label] += [t.id for t in s.feed(c).tokens]
    block = 100
    with torch.no_grad():
        for start in range(100, len(chunks) - block, block):
            for label, s, fn in arms:
                mel_module._frames_to_log_mel = fn
                for c in chunks[start : start + block]:
                    t0 = time.perf_counter()
                    up = s.feed(c)
                    times[label].append(time.perf_counter() - t0)
                    tokens[label] += [t.id for t in up.tokens]
    mel_module._frames_to_log_mel = torch_mel
    for label, *_ in arms:
        same = tokens[label] == tokens["as landed"]
        print(f"A/B fed step, {label:30s} {median_us(times[label])} ({len(times[label])} steps);"
              f" tokens {'equal' if same else 'DIFFER'} ({len(tokens[label])})", flush=True)  # fmt: skip


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
    ab_fed(model, tok, chunks[:1200])


if __name__ == "__main__":
    main()
