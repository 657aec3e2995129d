"""Sweep the Triton Q4_0 kernels' tile sizes on the model's shapes (CUDA), next to tinygemm and bf16.

    python bench/tune_q4.py OUT.json [--quick] [[--tuning voxtral_desktop/kernels/q4_tuning.json]

Every timing is a CUDA graph of 20 back-to-back calls (what a streaming step replays), median of
5 replays, per call. The best tile sizes per shape are written as the tuning table that
`gemv_config` / `matmul_config` in voxtral_desktop/kernels/triton_q4.py read; OUT.json keeps
everything measured.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from functools import partial

import torch

from voxtral_desktop.kernels import triton_q4
from voxtral_desktop.kernels.int4pack import CudaInt4Backend
from voxtral_desktop.kernels.q4 import Q4_0_BLOCK_BYTES, Q4Weight
from voxtral_desktop.kernels.triton_q4 import TritonQ4Backend, q4_0_linear

DEV = torch.device("cuda")
# (name, N, K, calls per streaming step, swiglu input)
SHAPES = [
    ("dec.wqkv", 6144, 3072, 26, False),
    ("dec.wo", 3072, 4096, 26, False),
    ("dec.w13", 18432, 3072, 26, False),
    ("dec.w2", 3072, 9216, 26, True),
    ("head", 131072, 3072, 1, False),
    ("enc.wqkv", 6144, 1280, 32, False),
    ("enc.wo", 1280, 2048, 32, False),
    ("enc.w13", 10240, 1280, 32, False),
    ("enc.w2", 1280, 5120, 32, True),
    ("adapter.0", 3072, 5120, 1, False),
    ("adapter.2", 3072, 3072, 1, False),
]


def random_q4(n: int, k: int) -> Q4Weight:
    nb = k // 32
    blocks = torch.randint(0, 256, (n, nb, Q4_0_BLOCK_BYTES), dtype=torch.uint8, device=DEV)
    blocks[..., :2] = (
        torch.full((n, nb), 0.01, dtype=torch.float16, device=DEV).view(torch.uint8).view(n, nb, 2)
    )
    return Q4Weight(blocks.view(n, nb * Q4_0_BLOCK_BYTES), (n, k))


def graph_time_us(fn, calls: int = 20, reps: int = 5, pick=None) -> float:
    """Microseconds a call of `fn`, from `reps` replays of a CUDA graph of `calls` calls: the
    median, or `pick(times)` (e.g. `min`)."""
    fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn()
        with torch.cuda.graph(graph, stream=stream):
            for _ in range(calls):
                fn()
    torch.cuda.current_stream().wait_stream(stream)
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / calls)
    return sorted(times)[len(times) // 2] if pick is None else pick(times)


def finish(out_path: str, results: dict, totals: dict[str, float], started: float, sections: dict) -> None:
    """Print the per-step totals, write everything measured to OUT.json and, with `--tuning PATH`,
    these sections into that table (its other sections, written by the other tuner, are kept)."""
    results["totals_us"] = {k: round(v, 1) for k, v in totals.items()}
    results["seconds"] = round(time.time() - started, 1)
    print("per-step totals (us):", results["totals_us"], flush=True)
    with open(out_path, "w") as f:
        json.dump(results, f, indent=1)
    if "--tuning" in sys.argv:
        path = sys.argv[sys.argv.index("--tuning") + 1]
        try:
            with open(path) as f:
                table = json.load(f)
        except FileNotFoundError:
            table = {}
        table.update(device=results["device"], **sections)
        with open(path, "w") as f:
            json.dump(table, f, separators=(",", ":"))


def main() -> None:
    out_path = sys.argv[1]
    quick = "--quick" in sys.argv
    results: dict[str, object] = {
        "device": torch.cuda.get_device_name(),
        "gemv": [],
        "matmul": [],
        "best": {},
    }
    gemv_grid = list(itertools.product([1, 2, 4, 8], [4, 8, 16, 32], [1, 2, 4, 8]))
    if quick:
        gemv_grid = [(4, 16, 4), (8, 16, 4), (2, 32, 4)]
    matmul_grid = list(itertools.product([64, 128], [64, 128], [32, 64], [4, 8], [3]))
    if quick:
        matmul_grid = [(64, 64, 32, 4, 3)]
    t_start = time.time()
    tuning: dict[str, dict[str, list[int]]] = {"gemv": {}, "matmul": {}}
    totals = {"triton_dec_m1": 0.0, "int4_dec_m1": 0.0, "triton_enc_m4": 0.0, "int4_enc_m4": 0.0}
    for name, n, k, count, swiglu in SHAPES:
        w = random_q4(n, k)
        split = TritonQ4Backend().prepare(w, DEV)
        packed = CudaInt4Backend().prepare(w, DEV)
        dense = torch.randn(n, k, device=DEV, dtype=torch.bfloat16)
        nbytes = n * k * 18 // 32
        for m in (1, 4, 8):
            x = torch.randn(m, 2 * k if swiglu else k, device=DEV, dtype=torch.bfloat16)
            xin = x[:, :k].contiguous()
            rows = []
            for bn, nb, warps in gemv_grid:
                os.environ["VOXTRAL_Q4_GEMV"] = f"{bn},{nb},{warps}"
                try:
                    us = graph_time_us(partial(q4_0_linear, x, split, None, swiglu=swiglu))
                except Exception as e:  # a config Triton cannot compile: recorded, skipped
                    rows.append({"cfg": [bn, nb, warps], "error": repr(e)[:200]})
                    continue
                rows.append({"cfg": [bn, nb, warps], "us": round(us, 2), "GBps": round(nbytes / us / 1e3, 1)})
            tuning["gemv"][f"{n},{k},{m}"] = min((r for r in rows if "us" in r), key=lambda r: r["us"])["cfg"]
            os.environ.pop("VOXTRAL_Q4_GEMV", None)
            ok = [r for r in rows if "us" in r]
            best = min(ok, key=lambda r: r["us"])
            int4_us = graph_time_us(partial(CudaInt4Backend().linear, xin, packed, None))
            bf16_us = graph_time_us(partial(torch.nn.functional.linear, xin, dense))
            entry = {"shape": name, "N": n, "K": k, "M": m, "best": best, "int4_us": round(int4_us, 2),
                     "bf16_us": round(bf16_us, 2), "all": rows}  # fmt: skip
            results["gemv"].append(entry)
            print(f"{name:10s} M={m} triton {best['us']:8.2f} us ({best['GBps']:7.1f} GB/s) cfg {best['cfg']}"
                  f" | int4 {int4_us:8.2f} | bf16 {bf16_us:8.2f}", flush=True)  # fmt: skip
            if m == 1 and not name.startswith(("enc", "adapter")):
                totals["triton_dec_m1"] += count * best["us"]
                totals["int4_dec_m1"] += count * int4_us
            if m == 4 and name.startswith(("enc", "adapter")):
                totals["triton_enc_m4"] += count * best["us"]
                totals["int4_enc_m4"] += count * int4_us
        for m in (256,):
            x = torch.randn(m, 2 * k if swiglu else k, device=DEV, dtype=torch.bfloat16)
            xin = x[:, :k].contiguous()
            rows = []
            for cfg in matmul_grid:
                os.environ["VOXTRAL_Q4_MATMUL"] = ",".join(map(str, cfg))
                try:
                    us = graph_time_us(partial(q4_0_linear, x, split, None, swiglu=swiglu), calls=5, reps=3)
                except Exception as e:
                    rows.append({"cfg": list(cfg), "error": repr(e)[:200]})
                    continue
                rows.append(
                    {"cfg": list(cfg), "us": round(us, 2), "TFLOPs": round(2 * m * n * k / us / 1e6, 1)}
                )
            os.environ.pop("VOXTRAL_Q4_MATMUL", None)
            ok = [r for r in rows if "us" in r]
            best = min(ok, key=lambda r: r["us"])
            bf16_us = graph_time_us(partial(torch.nn.functional.linear, xin, dense), calls=5, reps=3)
            tuning["matmul"][f"{n},{k}"] = best["cfg"]
            results["matmul"].append({"shape": name, "N": n, "K": k, "M": m, "best": best,
                                      "bf16_us": round(bf16_us, 2), "all": rows})  # fmt: skip
            print(f"{name:10s} M={m} triton-mm {best['us']:9.2f} us ({best['TFLOPs']} TF/s) cfg {best['cfg']}"
                  f" | bf16 {bf16_us:9.2f}", flush=True)  # fmt: skip
        torch.cuda.empty_cache()
    finish(out_path, results, totals, t_start, tuning)


if __name__ == "__main__":
    assert triton_q4.triton_available()
    main()
