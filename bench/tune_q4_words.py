"""The word GEMV (`q4_0_gemv_words`: every activation row in one program, dequantised without
int-to-float conversions) on the model's shapes, next to the byte GEMV and tinygemm (CUDA).

    python bench/tune_q4_words.py OUT.json [--tuning voxtral_desktop/kernels/q4_tuning.json]

Per shape and M in (1, 2, 4, 8): a sweep of (rows per program, words per iteration, warps), the
byte GEMV with its tuned tiles (VOXTRAL_Q4_GEMV_KERNEL=bytes) and tinygemm; with `--tuning`, the
best tiles go into the table's "words" section, which `words_config` reads. Timings as in
tune_q4.py (CUDA graph of 20 calls, median of 5 replays).
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

ROWS = (1, 2, 4, 8)
GRID = [
    (bn, bw, warps)
    for bn, bw, warps in itertools.product([1, 2, 4, 8, 16], [32, 64, 128, 256], [1, 2, 4, 8])
    if 4 <= bn * bw // (32 * warps) <= 16  # words per thread: bytes in flight, few registers
]


def timed(fn, env: dict[str, str]) -> float | str:
    os.environ.update(env)
    try:
        return graph_time_us(fn)
    except Exception as e:  # a config Triton cannot compile: recorded, skipped
        return repr(e)[:160]
    finally:
        for key in env:
            os.environ.pop(key, None)


def main() -> None:
    out_path = sys.argv[1]
    t0 = time.time()
    results: dict[str, object] = {"device": torch.cuda.get_device_name(), "grid": GRID, "rows": []}
    words: dict[str, list[int]] = {}
    totals = {f"{kind}_{part}": 0.0 for kind in ("words", "bytes", "int4") for part in ("dec_m1", "enc_m4", "dec_m8")}
    for name, n, k, count, swiglu in SHAPES:
        w = random_q4(n, k)
        split = TritonQ4Backend().prepare(w, DEV)
        packed = CudaInt4Backend().prepare(w, DEV)
        nbytes = n * k * 18 // 32
        ranked = GRID
        for m in ROWS:
            x = torch.randn(m, 2 * k if swiglu else k, device=DEV, dtype=torch.bfloat16)
            xin = x[:, :k].contiguous()
            fn = partial(q4_0_linear, x, split, None, swiglu=swiglu)
            want = torch.nn.functional.linear(
                torch.nn.functional.silu(x[:, :k].float()) * x[:, k:].float() if swiglu else x.float(),
                triton_q4.dequantize_split(split, torch.float32),
            )
            got = fn().float()
            err = float((got - want).norm() / want.norm())
            sweep = []
            for cfg in ranked:
                us = timed(fn, {"VOXTRAL_Q4_WORDS": ",".join(map(str, cfg))})
                sweep.append({"cfg": list(cfg), "us": round(us, 2)} if isinstance(us, float) else {"cfg": list(cfg), "error": us})
            ok = sorted((r for r in sweep if "us" in r), key=lambda r: r["us"])
            best = ok[0]
            if m == 1:  # the other row counts try the 12 best of M = 1 and their neighbours
                ranked = [tuple(r["cfg"]) for r in ok[:12]]
            bytes_us = timed(fn, {"VOXTRAL_Q4_GEMV_KERNEL": "bytes"})
            int4_us = graph_time_us(partial(CudaInt4Backend().linear, xin, packed, None))
            words[f"{n},{k},{m}"] = best["cfg"]
            results["rows"].append({"shape": name, "N": n, "K": k, "M": m, "best": best, "rel_err": err,
                                    "bytes_us": bytes_us, "int4_us": round(int4_us, 2), "all": sweep})  # fmt: skip
            print(f"{name:10s} M={m} words {best['us']:7.2f} us {nbytes / best['us'] / 1e3:6.0f} GB/s {best['cfg']}"
                  f" | bytes {bytes_us:7.2f} | int4 {int4_us:7.2f} | err {err:.1e}", flush=True)  # fmt: skip
            enc = name.startswith(("enc", "adapter"))
            part = {(1, False): "dec_m1", (4, True): "enc_m4", (8, False): "dec_m8"}.get((m, enc))
            if part:
                totals[f"words_{part}"] += count * best["us"]
                totals[f"bytes_{part}"] += count * (bytes_us if isinstance(bytes_us, float) else float("nan"))
                totals[f"int4_{part}"] += count * int4_us
        torch.cuda.empty_cache()
    finish(out_path, results, totals, t0, {"words": words})


if __name__ == "__main__":
    assert triton_q4.triton_available()
    main()
