"""A decoder-step attention kernel with the keys as the mma's rows, against the landed one (device).

    python bench/ab_step_attention.py [--sweep] [--folder] [--rounds 2]

The folder batch's decoder step (256 streams, 32 query heads on 8 KV heads of 128) read its
int8 cache at 2.5-2.7 TB/s and a bf16 cache at 4.1-4.3 TB/s (bench/RESULTS.md, eleventh
session). That kernel (`attn_split_kernel` with `fused.STEP_TILE`) computes q [16, D] x k^T:
the 4 query heads of a KV head pad to 16 rows, so q, the fp32 accumulator [16, 128] and a tile
of keys share one warp's registers (compiled for sm_90: all 255, with spills). The new
`attn_keys_kernel` (`fused.KEYS_TILE`) turns the products round, scores^T = k [keys, D] x q^T
and acc^T = v^T [D, keys] x p, so the keys fill the mma's rows and the heads pad only to its 8
columns: half the tensor-core work and a [128, 4] accumulator.

1. The step at 200 / 400 / 780 of 800 slots, int8 and bf16 caches: microseconds a call (CUDA
   graphs of 50 calls, best of 3), the cache read rate, the relative difference from fp32
   attention and the share of outputs equal to the landed kernel's; `--sweep` tries
   keys x warps x stages for the new kernel.
2. `--folder`: the bench's folder batch (256 x 60 s of noise, dense bf16 model, int8 decoder
   caches, graphs) with each kernel, alternating: wall time a call and whether every file's
   tokens agree with the first arm.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import torch
import triton

sys.path.insert(0, os.path.dirname(__file__))
from full_model import add_folder_arguments
from tune_q4 import graph_time_us

from voxtral_desktop.kernels import fused
from voxtral_desktop.kernels.kv_int8 import LayerKV, quantize_kv

parser = argparse.ArgumentParser()
parser.add_argument("--sweep", action="store_true")
add_folder_arguments(parser)
parser.add_argument("--tile", help="the new kernel's tile for --folder, as keys,warps,stages (0: default)")
parser.add_argument("--no-kernels", action="store_true", help="skip part 1")
args = parser.parse_args()
dev = torch.device("cuda")
print = functools.partial(print, flush=True)  # the log is read as it runs
LANDED_KEYS = fused.KEYS_TILE


def timed_us(fn) -> float:  # type: ignore[no-untyped-def]
    """Best of 3 replays of a CUDA graph of 50 calls (the batch decoder replays graphs)."""
    return graph_time_us(fn, calls=50, reps=3, pick=min)


def reference(q, k, v, visible) -> torch.Tensor:
    g = q.shape[1] // k.shape[1]
    k, v = k.float().repeat_interleave(g, 1), v.float().repeat_interleave(g, 1)
    scores = q.float() @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
    return torch.softmax(scores.masked_fill(~visible, float("-inf")), -1) @ v


def rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.float() - want).norm() / want.norm()).item()


def kernels() -> tuple[int, int, int | None]:
    """Times both kernels; returns the new kernel's tile with the least int8 time over the fills."""
    B, H, Hkv, D, S = 256, 32, 8, 128, 800
    q = torch.randn(B, H, 1, D, device=dev, dtype=torch.bfloat16)
    (k8, ks), (v8, vs) = (quantize_kv(torch.randn(B, Hkv, S, D, device=dev)) for _ in range(2))
    kv8 = LayerKV(k8, v8, ks, vs)
    kv16 = LayerKV(*kv8.dense(torch.bfloat16))
    tiles: list[tuple[int, int, int | None]] = [(32, 1, None), (16, 2, None), (32, 2, None), (32, 4, None)]
    if args.sweep:
        grid = [(k, w, s) for k in (16, 32, 64, 128) for w in (1, 2, 4, 8) for s in (None, 2, 4)]
        tiles += [t for t in grid if t[1] * 8 <= t[0]]  # at least 8 keys a warp
        tiles = list(dict.fromkeys(tiles))
    total: dict[tuple[int, int, int | None], float] = {}
    for filled in (200, 400, 780):
        held = torch.full((S,), -1, dtype=torch.long, device=dev)
        held[:filled] = torch.arange(filled, device=dev)
        window = filled - 10  # hides the oldest 10 slots: the mask is exercised
        pos = torch.tensor([filled - 1], device=dev)
        valid = torch.tensor(filled, device=dev)
        visible = ((held >= 0) & (filled - 1 - held < window))[None, :]
        want = reference(q[:16], *(t[:16] for t in kv16.dense(torch.float32)), visible)
        read8 = B * Hkv * filled * (2 * D + 8)
        print(f"decoder step: {B} streams, {H} heads on {Hkv} KV heads of {D}, {filled} of {S} slots")
        for name, kv, bytes_ in (("int8", kv8, read8), ("bf16", kv16, 2 * read8)):

            def call(kv=kv, at=(pos, held, window, valid)):  # type: ignore[no-untyped-def]
                return fused.attention(q, kv, *at)

            fused.KEYS_TILE = None
            landed = call()
            us = timed_us(call)
            print(f"  rows  {name} {fused.STEP_TILE!s:16s} {us:8.1f} us {bytes_ / us / 1e6:5.2f} TB/s"
                  f"  rel {rel(landed[:16], want):.2e}", flush=True)  # fmt: skip
            for tile in tiles:
                fused.KEYS_TILE = tile
                try:
                    got = call()
                    us = timed_us(call)
                except Exception as e:  # a tile that does not compile or fit
                    print(f"  keys  {name} {tile!s:16s} failed: {type(e).__name__}: {str(e)[:120]}")
                    total[tile] = float("inf")
                    continue
                if name == "int8":
                    total[tile] = total.get(tile, 0.0) + us
                same = (got == landed).float().mean().item()
                print(f"  keys  {name} {tile!s:16s} {us:8.1f} us {bytes_ / us / 1e6:5.2f} TB/s"
                      f"  rel {rel(got[:16], want):.2e}  equal to rows {same:.3f}", flush=True)  # fmt: skip
    fused.KEYS_TILE = LANDED_KEYS
    best = min(total, key=total.__getitem__)
    print(f"best keys tile over the fills (int8): {best}", flush=True)
    return best


def folder(tile: tuple[int, int, int | None]) -> None:
    from full_model import folder_arms

    def use(keys: tuple[int, int, int | None] | None):  # type: ignore[no-untyped-def]
        return lambda: setattr(fused, "KEYS_TILE", keys)

    rows = (f"step attention rows {fused.STEP_TILE}", use(None))
    keys = (f"step attention keys {tile}", use(tile))
    folder_arms([rows, keys, rows, keys], args.files, args.seconds, args.rounds)
    fused.KEYS_TILE = LANDED_KEYS


if __name__ == "__main__":
    print(torch.__version__, triton.__version__, torch.cuda.get_device_name(), flush=True)
    best = None if args.no_kernels else kernels()
    if args.tile:
        keys, warps, stages = (int(x) for x in args.tile.split(","))
        best = (keys, warps, stages or None)
    if args.folder:
        assert best is not None, "--folder needs part 1 or --tile"
        folder(best)
