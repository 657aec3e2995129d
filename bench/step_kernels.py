"""The kernels of one streaming-step replay in order, with where each starts and ends (device).

    python bench/step_kernels.py [--warm 100] [--head 60]

The full-size random model's live session (bench/full_model.py, CUDA graphs) is fed `--warm`
positions of noise; three replays of the step's graph are profiled (torch.profiler, CUDA
activity) and the second one listed: each kernel's start and end from the replay's first start
(us) and the gap since the previous kernel's end. Under programmatic dependent launch a kernel
starts before the one ahead of it ends and waits inside, so durations overlap; the gaps and the
spans of the groups below are what the list is for. Summary: the kernels before the first Q4
matmul (front end: log-mel, convolutions, cache bookkeeping) and after the last (argmax, copies),
and the count and summed duration by kind.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(__file__))
from full_model import on_the_gpu
from tune_step_mma import noise_chunks, warmed


def kind(name: str) -> str:
    if name.startswith("q4_mma"):
        return "q4 mma"
    for triton_name in ("rms_norm", "rope_cache", "attn_", "silu_mul"):
        if triton_name in name:
            return "triton " + triton_name.rstrip("_")
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--warm", type=int, default=100)
    parser.add_argument("--head", type=int, default=60, help="kernels listed from the start and the end")
    args = parser.parse_args()
    model, tok = on_the_gpu()
    session, _ = warmed(model, tok, noise_chunks(args.warm + 1)[: args.warm])
    graph = session.graph
    assert graph is not None
    g = graph.graphs[graph.bucket_for(session.state.decoder.cache.next_pos)]
    for _ in range(5):
        g.replay()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(3):
            g.replay()
        torch.cuda.synchronize()
    events = sorted(
        (e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA),
        key=lambda e: e.time_range.start,
    )
    n = len(events) // 3
    step = events[n : 2 * n]
    t0 = step[0].time_range.start
    rows = []
    prev_end = t0
    for i, e in enumerate(step):
        start, end = e.time_range.start - t0, e.time_range.end - t0
        rows.append((i, e.name, start, end, start - (prev_end - t0)))
        prev_end = max(prev_end, e.time_range.end)
    print(f"{n} kernels a replay, first start to last end {prev_end - t0:.1f} us")
    shown = set(range(args.head)) | set(range(n - args.head, n))
    for i, name, start, end, gap in rows:
        if i in shown:
            print(f"{i:4d} {start:9.2f} {end:9.2f} gap {gap:7.2f}  {name[:90]}")
    mma = [i for i, name, *_ in rows if name.startswith("q4_mma")]
    if mma:
        first, last = mma[0], mma[-1]
        print(f"front: {first} kernels before the first Q4 matmul, which starts at {rows[first][2]:.1f} us")
        print(
            f"tail: {n - last - 1} kernels after the last Q4 matmul (ends {rows[last][3]:.1f} us),"
            f" last end {prev_end - t0:.1f} us"
        )
    by_kind: dict[str, list[float]] = defaultdict(list)
    for _, name, start, end, _ in rows:
        by_kind[kind(name)].append(end - start)
    for k, durations in sorted(by_kind.items()):
        print(f"{k:22s} {len(durations):4d} kernels, summed duration {sum(durations):8.1f} us")
    others: dict[str, int] = defaultdict(int)
    for _, name, *_ in rows:
        if kind(name) == "other":
            others[name[:100]] += 1
    for name, count in sorted(others.items(), key=lambda kv: -kv[1]):
        print(f"  other x{count}: {name}")


if __name__ == "__main__":
    main()
