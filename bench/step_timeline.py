"""Where the step's Q4 matmuls spend their time, seen from inside the kernels (device).

    python bench/step_timeline.py [--depth 100] [--replays 100] [--save records.npy]

The full-size random model (bench/full_model.py), one live session fed `--depth` positions of
noise and saved. The step's graph is captured again with `q4_mma.cu` compiled with
`Q4_TIMELINE`: thread 0 of every block of every Q4 matmul notes the global timer and its SM's
clock when the block starts, when the wait for the previous kernel returns, when its loop ends
and when it is done. Each variant keeps the blocks an SM it has without the marks (its launch
bounds are set from the plain kernel's registers). One replay from the saved state is recorded.

Printed per kind of matrix (median over the step's launches of that kind): blocks, blocks resident
on the busiest SM, the launch's span from its first block's start to its last block's end, the
time from the first block's start to the wait's return (how far the launch ran ahead of the
kernel before it), from the wait to the last block's end, and each block's median cycles before
the wait, in the loop and after it; then the step's total time in matmuls against the replay.
The marks themselves cost the replay about 7 % (printed).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import statistics
import sys
from collections import defaultdict

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from full_model import on_the_gpu
from tune_step_mma import noise_chunks, recapture, replay_us, warmed

from voxtral_desktop.kernels import mma_q4

CU_FUNC_ATTRIBUTE_NUM_REGS = 4
RECORD = 8  # words a block's record takes (q4_mma.cu)
NAMES = {  # (N, K) -> the matrix (the gated pairs' N counts gate and up rows)
    (6144, 3072): "decoder wqkv",
    (3072, 4096): "decoder wo",
    (18432, 3072): "decoder w1/w3",
    (3072, 9216): "decoder w2",
    (131072, 3072): "head",
    (6144, 1280): "encoder wqkv",
    (1280, 2048): "encoder wo",
    (10240, 1280): "encoder w1/w3",
    (1280, 5120): "encoder w2",
}


class Kernels:
    """`mma_q4._kernel` with the source prefixed by `prefix` (a #define or nothing) and each
    variant's launch bounds from `bounds`; every build is kept, so graphs of several builds can
    live side by side."""

    def __init__(self) -> None:
        self.prefix = ""
        self.bounds: dict[tuple, int] = {}
        self.built: dict[tuple, mma_q4._Launcher] = {}
        self.used: set[tuple] = set()
        self.original_source = mma_q4._source

    def source(self, variants) -> str:
        text = self.original_source(variants)
        for v in variants:
            blocks = self.bounds.get(tuple(v))
            if blocks:
                w, *_ = v
                name = mma_q4._variant_name(*v)
                old = rf"__launch_bounds__\({w * 32}\) {name}\("
                text = re.sub(old, f"__launch_bounds__({w * 32}, {blocks}) {name}(", text)
        return self.prefix + text

    def __call__(self, warps: int, nt: int, unroll: int, gated: bool, device_index: int, norm: int = 0):
        v = (warps, nt, unroll, gated, norm) if norm else (warps, nt, unroll, gated)
        self.used.add(v)
        key = (self.prefix, v)
        if key not in self.built:
            mma_q4._source = self.source
            try:
                self.built[key] = mma_q4._compile((v,), device_index)[v]
            finally:
                mma_q4._source = self.original_source
        return self.built[key]


def registers(launcher: mma_q4._Launcher) -> int:
    driver = torch.cuda._utils._get_gpu_runtime_library()
    value = ctypes.c_int()
    rc = driver.cuFuncGetAttribute(ctypes.byref(value), CU_FUNC_ATTRIBUTE_NUM_REGS, launcher.func)
    return value.value if rc == 0 else -1


def resident_blocks(threads: int, regs: int) -> int:
    """Blocks an SM holds by threads and registers (allocated per warp in units of 256)."""
    per_warp = -(-regs * 32 // 256) * 256
    return min(2048 // threads, 65536 // (threads // 32 * per_warp))


def median_of(values: list[float]) -> float:
    """The median of the values that are not NaN (NaN if none)."""
    kept = [v for v in values if v == v]
    return statistics.median(kept) if kept else float("nan")


def timeline(records: np.ndarray) -> None:
    """The records of one replay, summarised per kind of matrix."""
    by_launch: dict[int, list[np.ndarray]] = defaultdict(list)
    for r in records:
        by_launch[int(r[4])].append(r)
    launches = sorted(by_launch.values(), key=lambda rs: min(int(r[0]) for r in rs))
    kinds: dict[str, list[dict]] = defaultdict(list)
    previous_end = None
    gaps = []
    for rs in launches:
        a = np.array(rs, dtype=np.int64)
        n, k = int(a[0, 5]) >> 32, int(a[0, 5]) & 0xFFFFFFFF
        sms = a[:, 6] >> 32
        clocks = a[:, 7].astype(np.uint64)
        mask = np.uint64((1 << 21) - 1)
        start, waited, end = int(a[:, 0].min()), int(a[:, 1].min()), int(a[:, 3].max())
        row = {
            "blocks": len(a),
            "warps": int((a[0, 6] >> 24) & 0xFF),
            "per_sm": int(np.bincount(sms).max()),
            "span": (end - start) / 1e3,
            "ahead": (waited - start) / 1e3,
            "after_wait": (end - waited) / 1e3,
            "gap": (waited - previous_end) / 1e3 if previous_end is not None else float("nan"),
            "pre": float(np.median(clocks & mask)),
            "loop": float(np.median((clocks >> np.uint64(21)) & mask)),
            "post": float(np.median((clocks >> np.uint64(42)) & mask)),
            "loop_max": float(((clocks >> np.uint64(21)) & mask).max()),
            "ns_loop": float(np.median(a[:, 2] - a[:, 1])) / 1e3,
        }
        if previous_end is not None:
            gaps.append(row["gap"])
        previous_end = end
        kinds[NAMES.get((n, k), f"{n}x{k}")].append(row)
    print(
        f"{'matrix':15s} {'n':>3s} {'blocks':>6s} {'warps':>5s} {'/SM':>4s} {'span us':>8s} {'ahead':>6s}"
        f" {'waited->end':>11s} {'gap':>6s} | median cycles: {'pre':>6s} {'loop':>6s} {'post':>6s}"
        f" {'loop max':>8s} | loop us"
    )
    total = 0.0
    for name, rows in kinds.items():
        med = {key: median_of([r[key] for r in rows]) for key in rows[0]}
        total += sum(r["after_wait"] for r in rows)
        print(
            f"{name:15s} {len(rows):3d} {med['blocks']:6.0f} {med['warps']:5.0f} {med['per_sm']:4.1f}"
            f" {med['span']:8.2f} {med['ahead']:6.2f} {med['after_wait']:11.2f} {med['gap']:6.2f} |"
            f" {'':15s}{med['pre']:6.0f} {med['loop']:6.0f} {med['post']:6.0f} {med['loop_max']:8.0f} |"
            f" {med['ns_loop']:.2f}"
        )
    first, last = int(records[:, 0].min()), int(records[:, 3].max())
    print(
        f"{len(launches)} launches; first block start to last block end {(last - first) / 1e3:.1f} us;"
        f" the matmuls' waited->end summed {total:.1f} us; gaps (previous matmul's end to this one's"
        f" wait) summed {sum(gaps):.1f} us, median {statistics.median(gaps):.2f} us",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--depth", type=int, default=100, help="positions fed before the state is saved")
    parser.add_argument("--replays", type=int, default=100)
    parser.add_argument("--save", help="a .npy file for the last round's records")
    args = parser.parse_args()
    model, tok = on_the_gpu()
    chunks = noise_chunks(args.depth)
    kernels = Kernels()
    mma_q4._kernel = kernels  # type: ignore[assignment]
    with torch.no_grad():
        session, saved = warmed(model, tok, chunks[: args.depth])
        recapture(session, saved)
        plain_us = replay_us(session, saved, args.replays)
        print(f"plain: replay {plain_us:.1f} us", flush=True)
        for v in sorted(kernels.used, key=str):
            regs = registers(kernels.built[("", v)])
            kernels.bounds[v] = resident_blocks(32 * v[0], regs)
            print(f"  {mma_q4._variant_name(*v):28s} {regs} registers, {kernels.bounds[v]} blocks an SM")
        cap = 400_000
        buf = torch.zeros(RECORD * (cap + 1), dtype=torch.int64, device="cuda")
        kernels.prefix = f"#define Q4_TIMELINE 0x{buf.data_ptr():x}ULL\n"
        recapture(session, saved)
        for v in sorted(kernels.used, key=str):
            if (kernels.prefix, v) not in kernels.built:
                continue  # used by the warm-up's prompt, not by the step
            regs = registers(kernels.built[(kernels.prefix, v)])
            if resident_blocks(32 * v[0], regs) != kernels.bounds[v]:
                print(f"  timeline {mma_q4._variant_name(*v)}: {regs} registers, fewer blocks an SM")
        print(f"with the marks: replay {replay_us(session, saved, args.replays):.1f} us", flush=True)
        graph = session.graph
        assert graph is not None
        g = graph.graphs[graph.bucket_for(session.state.decoder.cache.next_pos)]
        for round_ in range(2):
            saved.restore(session)
            g.replay()  # warm: the same state's replay, as replay_us runs them back to back
            torch.cuda.synchronize()
            buf.zero_()
            g.replay()
            torch.cuda.synchronize()
            count = int(buf[0].item())
            assert 0 < count <= cap, count
            records = buf[RECORD : RECORD * (count + 1)].view(count, RECORD).cpu().numpy()
            print(f"round {round_ + 1}: {count} block records", flush=True)
            timeline(records)
            if args.save:
                np.save(args.save, records)
        saved.restore(session)


if __name__ == "__main__":
    main()
