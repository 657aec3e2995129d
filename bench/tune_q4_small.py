"""Few-row Q4_0 products on the model's shapes (CUDA): the GEMV against the tensor-core matmul
with 16-row tiles, next to tinygemm, per number of activation rows M.

    python bench/tune_q4_small.py OUT.json [--tuning voxtral_desktop/kernels/q4_tuning.json]

The GEMV runs one program per activation row, so its cost grows with M; the matmul reads each
weight tile once for up to 16 rows (tl.dot needs 16), so its cost is flat in M up to 16. This
measures where one overtakes the other and writes the choice per "N,K,M" into the tuning table's
"small" section (["gemv", BN, BLOCKS, WARPS] or ["mm", BM, BN, BYTES, WARPS, STAGES]), which
`q4_0_linear` reads. Timings as in tune_q4.py (CUDA graph of 20 calls, median of 5 replays).
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from functools import partial

import torch

sys.path.insert(0, os.path.dirname(__file__))
from tune_q4 import DEV, SHAPES, finish, graph_time_us, random_q4

from voxtral_desktop.kernels import triton_q4
from voxtral_desktop.kernels.int4pack import CudaInt4Backend
from voxtral_desktop.kernels.triton_q4 import TritonQ4Backend, q4_0_linear

ROWS = (1, 2, 4, 8, 16)


def sweep(env: str, grid: list[tuple[int, ...]], fn) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for cfg in grid:
        os.environ[env] = ",".join(map(str, cfg))
        try:
            us = graph_time_us(fn)
        except Exception as e:  # a config Triton cannot compile: recorded, skipped
            rows.append({"cfg": list(cfg), "error": repr(e)[:160]})
            continue
        rows.append({"cfg": list(cfg), "us": round(us, 2)})
    os.environ.pop(env, None)
    return rows


def main() -> None:
    out_path = sys.argv[1]
    t0 = time.time()
    gemv_grid = list(itertools.product([4, 8, 16, 32], [8, 16, 32], [2, 4, 8]))
    mm_grid = [(16, 16, 64, 2, 3), (16, 16, 128, 2, 3)]
    mm_grid += itertools.product([16], [32, 64, 128], [32, 64, 128], [2, 4], [3, 4])
    results: dict[str, object] = {"device": torch.cuda.get_device_name(), "rows": []}
    small: dict[str, list[object]] = {}
    totals = {
        k: 0.0
        for k in ("int4_dec_m1", "best_dec_m1", "int4_enc_m4", "best_enc_m4", "int4_dec_m8", "best_dec_m8")
    }
    for name, n, k, count, swiglu in SHAPES:
        w = random_q4(n, k)
        split = TritonQ4Backend().prepare(w, DEV)
        packed = CudaInt4Backend().prepare(w, DEV)
        nbytes = n * k * 18 // 32
        mm_best = None
        for m in ROWS:
            x = torch.randn(m, 2 * k if swiglu else k, device=DEV, dtype=torch.bfloat16)
            xin = x[:, :k].contiguous()
            fn = partial(q4_0_linear, x, split, None, swiglu=swiglu)
            triton_q4.GEMV_MAX_ROWS = 16
            gemv = sweep("VOXTRAL_Q4_GEMV", gemv_grid if m in (1, 4) else gemv_grid[::3], fn)
            triton_q4.GEMV_MAX_ROWS = 0
            if mm_best is None or m in (1, 16):  # flat in M: the full sweep once, re-checked at 16
                mm = sweep("VOXTRAL_Q4_MATMUL", mm_grid, fn)
            else:
                mm = sweep("VOXTRAL_Q4_MATMUL", [tuple(mm_best["cfg"])], fn)  # type: ignore[index]
            triton_q4.GEMV_MAX_ROWS = 8
            g = min((r for r in gemv if "us" in r), key=lambda r: r["us"])
            mb = min((r for r in mm if "us" in r), key=lambda r: r["us"])
            if m == 1:
                mm_best = mb
            int4_us = graph_time_us(partial(CudaInt4Backend().linear, xin, packed, None))
            choice = ["gemv", *g["cfg"]] if g["us"] <= mb["us"] else ["mm", *mb["cfg"]]
            best_us = min(g["us"], mb["us"])
            small[f"{n},{k},{m}"] = choice
            results["rows"].append({"shape": name, "N": n, "K": k, "M": m, "gemv": g, "mm": mb,
                                    "int4_us": round(int4_us, 2), "choice": choice})  # fmt: skip
            print(f"{name:10s} M={m:2d} gemv {g['us']:8.2f} {g['cfg']} | mm {mb['us']:8.2f} {mb['cfg']}"
                  f" | int4 {int4_us:8.2f} | {nbytes / best_us / 1e3:6.0f} GB/s", flush=True)  # fmt: skip
            enc = name.startswith(("enc", "adapter"))
            if m == 1 and not enc:
                totals["int4_dec_m1"] += count * int4_us
                totals["best_dec_m1"] += count * best_us
            if m == 8 and not enc:
                totals["int4_dec_m8"] += count * int4_us
                totals["best_dec_m8"] += count * best_us
            if m == 4 and enc:
                totals["int4_enc_m4"] += count * int4_us
                totals["best_enc_m4"] += count * best_us
        torch.cuda.empty_cache()
    finish(out_path, results, totals, t0, {"small": small})


if __name__ == "__main__":
    assert triton_q4.triton_available()
    main()
