"""Tiles of the fused attention and the RoPE/cache kernel at the shapes a file batch runs (device).

    python bench/tune_attention.py

Times `fused.attention` on an encoder chunk of a folder batch (32 streams x 256 frames, 32
heads of 64, 1,005 int8 keys) for each tile choice in `CHOICES`, and a decoder step (4 query rows
per KV head, 8 KV heads of 128, 400 of 800 int8 slots filled) at 1, 64 and 256 streams, with
the keys split among programs as `fused.attention` chooses and, for comparison, always 16 ways
(the old rule); then the RoPE/cache kernel on the encoder chunk. Prints microseconds a call and
the rate (TFLOP/s for chunks, TB/s of cache read for steps).
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from tune_q4 import graph_time_us as timed  # a CUDA graph of 20 calls: host launches do not count

from voxtral_desktop.kernels import fused
from voxtral_desktop.kernels.kv_int8 import LayerKV, quantize_kv
from voxtral_desktop.kernels.positions import rope_tables

CHOICES = [  # (query rows, keys per step, warps, stages)
    (64, 64, 4, None), (64, 64, 4, 2), (64, 64, 4, 3), (128, 64, 4, None), (128, 64, 8, None),
    (128, 64, 8, 3), (64, 128, 4, None), (64, 128, 8, None), (128, 128, 8, None), (64, 32, 4, None),
]  # fmt: skip
dev = torch.device("cuda")


def int8_ring(B: int, hkv: int, S: int, D: int) -> LayerKV:
    (k, ks), (v, vs) = (quantize_kv(torch.randn(B, hkv, S, D, device=dev)) for _ in range(2))
    return LayerKV(k, v, ks, vs)


# an encoder chunk: 256 new frames at positions 744..999 of a 1,005-slot ring, window 750
B, H, T, D, S = 32, 32, 256, 64, 1005
q = torch.randn(B, H, T, D, device=dev, dtype=torch.bfloat16)
kv = int8_ring(B, H, S, D)
pos = torch.arange(T, device=dev) + 744
seen = (pos, torch.arange(S, device=dev), 750)
flops = 4 * B * H * T * S * D
want = fused.attention(q, kv, *seen).float()
kv16 = LayerKV(*kv.dense(torch.bfloat16))
us = timed(lambda: fused.attention(q, kv16, *seen))
print(f"chunk {fused.CHUNK_TILES[D]}, bf16 cache: {us:8.1f} us  {flops / us / 1e6:6.1f} TFLOP/s", flush=True)
for choice in CHOICES:
    fused.CHUNK_TILES[D] = choice
    try:
        got = fused.attention(q, kv, *seen).float()
        err = ((got - want).norm() / want.norm()).item()
        us = timed(lambda: fused.attention(q, kv, *seen))
        rate = flops / us / 1e6
        print(f"chunk {choice}: {us:8.1f} us  {rate:6.1f} TFLOP/s  (rel. diff {err:.1e})", flush=True)
    except Exception as e:  # a tile that does not compile or fit
        print(f"chunk {choice}: failed: {type(e).__name__}: {str(e)[:120]}", flush=True)

# decoder steps
H, HKV, D, S, filled = 32, 8, 128, 800, 400
for B in (1, 64, 256):
    q = torch.randn(B, H, 1, D, device=dev, dtype=torch.bfloat16)
    kv = int8_ring(B, HKV, S, D)
    valid = torch.tensor(filled, device=dev)
    held = torch.arange(S, device=dev)
    held[filled:] = -1
    read = B * HKV * filled * 2 * (D + 4)

    at = torch.tensor([filled], device=dev)

    def step(q=q, kv=kv, held=held, valid=valid, at=at) -> None:  # type: ignore[no-untyped-def]
        fused.attention(q, kv, at, held, 8192, valid)

    us = timed(step)
    saved = fused._programs_to_fill
    fused._programs_to_fill = lambda device: 10**9  # type: ignore[assignment]
    try:
        us16 = timed(step)
    finally:
        fused._programs_to_fill = saved
    print(f"step B={B}: {us:7.1f} us ({read / us / 1e6:.2f} TB/s); split 16 ways: {us16:7.1f} us", flush=True)
    if B == 256:
        default = fused.KEYS_TILE
        tiles = ((64, 8), (128, 4), (128, 8), (32, 4), (64, 2), (32, 2), (128, 2), (256, 8), (32, 1))
        for keys, warps in tiles:
            fused.KEYS_TILE = (keys, warps, None)
            us = timed(step)
            print(f"  step tile {(keys, warps)}: {us:7.1f} us ({read / us / 1e6:.2f} TB/s)", flush=True)
        fused.KEYS_TILE = default  # bench/tune_folder_kernels.py sweeps stages too

# RoPE + int8 cache write of an encoder chunk
B, T, H, D, C = 32, 256, 32, 64, 1005
qkv = torch.randn(B, T, 3 * H * D, device=dev, dtype=torch.bfloat16)
rot = rope_tables(torch.arange(T, device=dev) + 744, D, 1e6)
slots = (torch.arange(T, device=dev) + 744) % C
ring = int8_ring(B, H, C, D)
us = timed(lambda: fused.rope_qkv_to_cache(qkv, rot, slots, ring, H, H, D))
moved = qkv.numel() * 2 + B * T * H * D * (2 + 2 * 1)
print(f"rope+cache, encoder chunk: {us:.1f} us ({moved / us / 1e6:.2f} TB/s)")
B, T, H, HKV, D, C = 1, 1, 32, 8, 128, 8230
qkv = torch.randn(B, T, (H + 2 * HKV) * D, device=dev, dtype=torch.bfloat16)
rot = rope_tables(torch.arange(T, device=dev) + 744, D, 1e6)
slots = (torch.arange(T, device=dev) + 744) % C
ring = int8_ring(B, HKV, C, D)
us = timed(lambda: fused.rope_qkv_to_cache(qkv, rot, slots, ring, H, HKV, D))
print(f"rope+cache, streaming step: {us:.1f} us")
