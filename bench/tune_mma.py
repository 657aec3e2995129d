"""The tensor-core Q4_0 kernel (kernels/q4_mma.cu) on the model's shapes, against tinygemm.

    python bench/tune_mma.py OUT.json            # the sweep below
    python bench/tune_mma.py OUT.json --rows     # M = 1..256 with the default choice, and compile time
    python bench/tune_mma.py OUT.json --overhead # compile time; host time of eager calls

For each shape: the error against `q4_linear_reference` (bf16 activations, with a bias) for
several row counts; then GPU time per call at M = 1 and M = 4 through a CUDA graph, over
enough copies of the matrix (cycled) that none stays in the 50 MB L2 (as in a streaming step,
which reads 2.5 GB), for warps x unroll and for tinygemm on the same copies. Prints a table.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from tune_q4 import DEV, SHAPES, graph_time_us, random_q4

from voxtral_desktop.kernels.int4pack import CudaInt4Backend
from voxtral_desktop.kernels.mma_q4 import (
    STEP_COLS,
    TILE_ROWS,
    UNROLL,
    CudaMmaQ4Backend,
    choose_warps,
    mma_linear,
)
from voxtral_desktop.kernels.q4 import q4_linear_reference

ROTATE_BYTES = 256 * 2**20


def graph_us(fns) -> float:
    """Median GPU time of one call, each of `fns` called once per captured graph."""
    turn = itertools.cycle(fns)
    return graph_time_us(lambda: next(turn)(), calls=len(fns))


def rows_mode(out: str) -> None:
    """Time per call against M (prompts, encoder chunks of files), next to tinygemm and to
    dequantising into a bf16 scratch matrix + cuBLAS; then NVRTC's compile time of a variant."""
    mma, int4 = CudaMmaQ4Backend(), CudaInt4Backend()
    rows = []
    for name, n, k, _, _ in SHAPES:
        if name not in ("dec.wqkv", "dec.w13", "dec.w2", "enc.wqkv", "enc.w13", "enc.w2"):
            continue
        copies = max(1, min(64, ROTATE_BYTES // (n * k * 9 // 16)))
        ws = [mma.prepare(random_q4(n, k), DEV) for _ in range(copies)]
        ts = [int4.prepare(random_q4(n, k), DEV) for _ in range(copies)]
        scratch = torch.empty(n, k, dtype=torch.bfloat16, device=DEV)

        def dense(x, q, scratch=scratch):
            scratch.copy_(mma.dequantize(q, torch.bfloat16))
            return torch.nn.functional.linear(x, scratch)

        for m in (1, 8, 16, 39, 64, 128, 256):
            x = torch.randn(m, k, device=DEV, dtype=torch.bfloat16)
            r = {"name": name, "M": m}
            r["int4"] = graph_us([lambda t=t, x=x: int4.linear(x, t, None) for t in ts])
            r["mma"] = graph_us([lambda q=q, x=x: mma_linear(x, q) for q in ws])
            r["dequant_cublas"] = graph_us([lambda q=q, x=x: dense(x, q) for q in ws[:4]])
            print(json.dumps(r), flush=True)
            rows.append(r)
        del ws, ts, scratch
        torch.cuda.empty_cache()
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"device": torch.cuda.get_device_name(), "rows": rows}, f, indent=1)


def overhead_mode() -> None:
    """NVRTC compile times, and the host time per eager call (a small matrix, no sync until the
    end: what bounds prompts and file encoder chunks, which run outside CUDA graphs)."""
    from voxtral_desktop.kernels import mma_q4

    for v in ((16, 1, 2, False), (8, 8, 2, False), (4, 1, 2, True)):
        t0 = time.perf_counter()
        mma_q4._kernel(*v, 0)
        print(f"NVRTC compile + load of variant {v}: {time.perf_counter() - t0:.3f} s")
    w = random_q4(1280, 2048)
    mma, int4 = CudaMmaQ4Backend(), CudaInt4Backend()
    p, t = mma.prepare(w, DEV), int4.prepare(w, DEV)
    bias = torch.randn(1280, device=DEV, dtype=torch.bfloat16)
    x = torch.randn(4, 2048, device=DEV, dtype=torch.bfloat16)
    for label, fn in (
        ("tinygemm", lambda: int4.linear(x, t, None)),
        ("tinygemm + bias", lambda: int4.linear(x, t, bias)),
        ("mma", lambda: mma.linear(x, p, None)),
        ("mma + bias", lambda: mma.linear(x, p, bias)),
    ):
        for _ in range(50):
            fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(2000):
            fn()
        torch.cuda.synchronize()
        print(
            f"eager {label}: {(time.perf_counter() - t0) / 2000 * 1e6:.1f} us a call (host-bound)", flush=True
        )


def main() -> None:
    out = sys.argv[1]
    if "--rows" in sys.argv:
        rows_mode(out)
        return
    if "--overhead" in sys.argv:
        overhead_mode()
        return
    t0 = time.time()
    mma, int4 = CudaMmaQ4Backend(), CudaInt4Backend()
    rows = []
    totals: dict[str, float] = {}
    for name, n, k, count, _ in SHAPES:
        w = random_q4(n, k)
        p = mma.prepare(w, DEV)
        bias = torch.randn(n, device=DEV, dtype=torch.bfloat16)
        errs = {}
        for m in (1, 3, 4, 8, 13, 39, 64, 70):
            x = torch.randn(m, k, device=DEV, dtype=torch.bfloat16)
            ref = q4_linear_reference(x.float(), w, bias.float())
            got = mma_linear(x, p, bias).float()
            errs[m] = float((got - ref).norm() / ref.norm())
        copies = max(1, min(64, ROTATE_BYTES // (n * k * 9 // 16)))
        ws = [p] + [mma.prepare(random_q4(n, k), DEV) for _ in range(copies - 1)]
        ts = [int4.prepare(random_q4(n, k), DEV) for _ in range(copies)]
        row = {"name": name, "N": n, "K": k, "count": count, "copies": copies, "max_rel_err": errs}
        tiles, iters = n // TILE_ROWS, k // STEP_COLS
        for m in (1, 4):
            x = torch.randn(m, k, device=DEV, dtype=torch.bfloat16)
            row[f"int4_m{m}"] = graph_us([lambda t=t, x=x: int4.linear(x, t, None) for t in ts])
            best = None
            for warps in (4, 8, 16):
                for unroll in (2, 4, 8):
                    us = graph_us(
                        [lambda q=q, x=x, w=warps, u=unroll: mma_linear(x, q, None, w, u) for q in ws]
                    )
                    row[f"mma_m{m}_w{warps}_u{unroll}"] = us
                    if best is None or us < best[0]:
                        best = (us, warps, unroll)
            auto = choose_warps(tiles, iters, 1)
            row[f"mma_m{m}_auto"] = row[f"mma_m{m}_w{auto}_u{UNROLL}"]
            row[f"mma_m{m}_best"] = best
            gbps = n * k * 9 / 16 / best[0] / 1e3
            print(
                f"{name:10s} M={m} int4 {row[f'int4_m{m}']:7.1f} us | mma auto(w{auto},u{UNROLL}) "
                f"{row[f'mma_m{m}_auto']:7.1f} us | best {best[0]:7.1f} us (w{best[1]},u{best[2]}) "
                f"{gbps:6.0f} GB/s | err {max(errs.values()):.2e}",
                flush=True,
            )
            for key, v in (
                ("int4", row[f"int4_m{m}"]),
                ("mma_auto", row[f"mma_m{m}_auto"]),
                ("mma_best", best[0]),
            ):
                part = "dec" if name.startswith(("dec", "head")) else "enc"
                totals[f"{part}_m{m}_{key}"] = totals.get(f"{part}_m{m}_{key}", 0.0) + v * count
        rows.append(row)
        del ws, ts
        torch.cuda.empty_cache()
    print("per streaming step (us, calls x time):", json.dumps({k: round(v, 1) for k, v in totals.items()}))
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"device": torch.cuda.get_device_name(), "rows": rows, "totals": totals}, f, indent=1)
    print(f"done in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
