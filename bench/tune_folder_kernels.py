"""Tiles of the three Triton kernels a folder batch spends most non-matmul time in (device).

    python bench/tune_folder_kernels.py [--quick]

At the shapes of `BatchDecoder` on 256 files (bench/RESULTS.md, session 8 profile):
- the decoder step's attention over 256 streams (4 query rows per KV head, 8 KV heads of 128,
  int8 cache of 800 slots with 200 / 400 / 780 filled): every (keys, warps, stages) tile of
  `fused.KEYS_TILE` (`attn_keys_kernel` since the twelfth session), and the keys split 2 or 4
  ways with the combine kernel (`fused.SPLIT_TILE` choices);
- the encoder chunk's attention (64 streams x 128 new frames, 32 heads of 64, a ring of 877
  int8 slots, window 750): the `fused.CHUNK_TILES` choices with pipeline stages;
- the RoPE/cache kernel on an encoder chunk (64 x 128 positions, 96 head vectors of 64, int8,
  bias) and on a 256-stream decoder step: `fused.ROPE_ELEMENTS` x `fused.ROPE_WARPS`.
Each is checked against the current default's output, then timed in a CUDA graph of 20 calls
(microseconds a call; TB/s of bytes that must move, TFLOP/s for the chunk).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from tune_q4 import graph_time_us as timed  # a CUDA graph of 20 calls: host launches do not count

from voxtral_desktop.kernels import fused
from voxtral_desktop.kernels.kv_int8 import LayerKV, quantize_kv
from voxtral_desktop.kernels.positions import rope_tables

parser = argparse.ArgumentParser()
parser.add_argument("--quick", action="store_true", help="fewer tiles")
args = parser.parse_args()
dev = torch.device("cuda")


def int8_ring(B: int, hkv: int, S: int, D: int) -> LayerKV:
    (k, ks), (v, vs) = (quantize_kv(torch.randn(B, hkv, S, D, device=dev)) for _ in range(2))
    return LayerKV(k, v, ks, vs)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def attempt(label: str, fn, check) -> float:  # type: ignore[no-untyped-def]
    try:
        err = check()
        us = timed(fn)
    except Exception as e:  # a tile that does not compile or fit
        print(f"{label}: failed: {type(e).__name__}: {str(e)[:100]}", flush=True)
        return float("inf")
    print(f"{label}: {us:8.1f} us (rel. diff {err:.1e})", flush=True)
    return us


# ---- decoder step over 256 streams ----------------------------------------------------------
B, H, HKV, D, S = 256, 32, 8, 128, 800
q = torch.randn(B, H, 1, D, device=dev, dtype=torch.bfloat16)
kv = int8_ring(B, HKV, S, D)
default_tile = fused.KEYS_TILE
results: dict[tuple[object, ...], dict[int, float]] = {}
for filled in (400, 200, 780):
    valid = torch.tensor(filled, device=dev)
    held = torch.arange(S, device=dev)
    held[filled:] = -1
    at = torch.tensor([filled], device=dev)
    read = B * HKV * filled * 2 * (D + 4)
    fused.KEYS_TILE = default_tile
    want = fused.attention(q, kv, at, held, 8192, valid)

    def step(held=held, valid=valid, at=at) -> torch.Tensor:  # type: ignore[no-untyped-def]
        return fused.attention(q, kv, at, held, 8192, valid)

    base = timed(step)
    print(f"step B={B} filled {filled}: default {default_tile} {base:.1f} us ({read / base / 1e6:.2f} TB/s)")
    tiles: list[tuple[int, int, int | None]]
    if filled == 400:
        keys, warps, stages = ((16, 32, 64, 128), (1, 2, 4), (None, 2, 4))
        if args.quick:
            keys, warps, stages = ((64, 128), (2, 4), (None, 2, 4))
        tiles = list(itertools.product(keys, warps, stages))  # type: ignore[arg-type]
    else:
        best = sorted(results, key=lambda t: results[t][400])[:6]
        tiles = [t for t in best if len(t) == 3]  # type: ignore[misc]
    for tile in tiles:
        fused.KEYS_TILE = tile
        us = attempt(f"  tile {tile}", step, lambda want=want: rel(step(), want))
        results.setdefault(tile, {})[filled] = us
    fused.KEYS_TILE = default_tile
    saved = fused._programs_to_fill
    default_split = fused.SPLIT_TILE
    for ways, split_tile in itertools.product((2, 4), (default_split, (32, 1, None), (64, 2, None))):
        fused._programs_to_fill = lambda device, w=ways: B * HKV * w  # type: ignore[assignment]
        fused.SPLIT_TILE = split_tile
        try:
            us = attempt(f"  split {ways} ways, tile {split_tile}", step, lambda want=want: rel(step(), want))
            results.setdefault(("split", (ways, split_tile)), {})[filled] = us
        finally:
            fused._programs_to_fill = saved
            fused.SPLIT_TILE = default_split
ranked = sorted(results, key=lambda t: sum(results[t].get(f, float("inf")) for f in (200, 400, 780)))
print("step tiles by the sum over the three fills:")
for t in ranked[:8]:
    print(f"  {t}: {results[t]}")
fused.KEYS_TILE = default_tile

# ---- encoder chunk of a folder batch ---------------------------------------------------------
B, H, T, D, S, W = 64, 32, 128, 64, 877, 750
q = torch.randn(B, H, T, D, device=dev, dtype=torch.bfloat16)
kv = int8_ring(B, H, S, D)
pos = torch.arange(T, device=dev) + 1000
held = (torch.arange(S, device=dev) - S) + 1000 + T  # the ring's last S positions, all written
held = held.roll(int(1000 % S))
seen = (pos, held.contiguous(), W)
flops = 4 * B * H * T * W * D
default_chunk = fused.CHUNK_TILES[D]
want = fused.attention(q, kv, *seen)
chunks: list[tuple[int, int, int, int | None]] = [
    default_chunk, (64, 128, 4, 2), (64, 128, 4, 3), (64, 128, 4, 4), (64, 64, 4, 3), (64, 64, 4, 4),
    (128, 128, 8, 2), (128, 128, 8, 3), (128, 64, 4, 3), (128, 64, 8, 3), (32, 128, 4, 3), (64, 256, 8, 2),
]  # fmt: skip
for choice in chunks[: 4 if args.quick else None]:
    fused.CHUNK_TILES[D] = choice
    us = attempt(
        f"chunk {choice}",
        lambda: fused.attention(q, kv, *seen),
        lambda: rel(fused.attention(q, kv, *seen), want),
    )
    if us < float("inf"):
        print(f"    {flops / us / 1e6:.0f} TFLOP/s of visible keys")
fused.CHUNK_TILES[D] = default_chunk

# ---- RoPE + cache writes ---------------------------------------------------------------------
for B, T, H, HKV, D, C, with_bias in ((64, 128, 32, 32, 64, 877, True), (256, 1, 32, 8, 128, 800, False)):
    qkv = torch.randn(B, T, (H + 2 * HKV) * D, device=dev, dtype=torch.bfloat16)
    bias = torch.randn((H + 2 * HKV) * D, device=dev, dtype=torch.bfloat16) if with_bias else None
    rot = rope_tables(torch.arange(T, device=dev) + 700, D, 1e6)
    slots = (torch.arange(T, device=dev) + 700) % C
    ring = int8_ring(B, HKV, C, D)
    moved = qkv.numel() * 2 + B * T * H * D * 2 + B * T * 2 * HKV * (D + 4)
    default = (fused.ROPE_ELEMENTS, fused.ROPE_WARPS)
    want_q = fused.rope_qkv_to_cache(qkv, rot, slots, ring, H, HKV, D, bias)
    want_k = ring.k.clone()
    for elements, warps in ((1024, 2), (1024, 4), (2048, 2), (4096, 4)):
        fused.ROPE_ELEMENTS, fused.ROPE_WARPS = elements, warps

        def rope(qkv=qkv, rot=rot, slots=slots, ring=ring, H=H, HKV=HKV, D=D, bias=bias) -> torch.Tensor:  # type: ignore[no-untyped-def]
            return fused.rope_qkv_to_cache(qkv, rot, slots, ring, H, HKV, D, bias)

        def check(rope=rope, ring=ring, want_q=want_q, want_k=want_k) -> float:  # type: ignore[no-untyped-def]
            got = rope()
            assert torch.equal(ring.k, want_k)
            return rel(got, want_q)

        us = attempt(f"rope B={B} T={T} D={D} elements {elements} warps {warps}", rope, check)
        if us < float("inf"):
            print(f"    {moved / us / 1e6:.2f} TB/s")
    fused.ROPE_ELEMENTS, fused.ROPE_WARPS = default
