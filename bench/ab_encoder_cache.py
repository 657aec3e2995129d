"""A file batch's encoder cache, int8 against bf16, at the bench's shapes (device machine).

    python bench/ab_encoder_cache.py [--rounds 2] [--files 256] [--seconds 60] [--tiles]

The encoder phase of a file batch runs chunks of 128 frames (64 streams) or 256 frames (8
streams) against an int8 ring of the 750-frame window. Every key is read by every frame of the
chunk, so int8 saves little traffic and costs a conversion. This script measures:
1. the chunk attention and the RoPE/cache kernel at the folder's shape (64 streams x 128 frames,
   32 heads of 64, 877 slots) on an int8 and a bf16 ring, and the chunk tiles on the bf16 ring
   (CUDA graphs of 20 calls, `tune_q4.graph_time_us`);
2. the bench's folder batch (`--files` x `--seconds` of noise, dense bf16 model, int8 decoder
   caches, graphs) with the encoder phase in groups of 64 streams on an int8 and a bf16 cache,
   and in one group of all streams (int8): each call's wall time, and how many files' tokens
   agree with the first arm;
3. a 300 s file in segments of <= 30 s, 8 rows (the bench's segments), on both caches.

The eleventh session also ran the encoder phase of one group beside the decoder, on a second
CUDA stream (`h200_session11/encoder_beside_decoder.patch`, not kept: bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from full_model import full_size_model, timed_batch_calls
from tune_q4 import graph_time_us as timed  # a CUDA graph of 20 calls: host launches do not count

from voxtral_desktop.benchmark import noise
from voxtral_desktop.config import SAMPLE_RATE, StreamConfig
from voxtral_desktop.engine.batch import BatchDecoder
from voxtral_desktop.engine.long_file import transcribe_segmented
from voxtral_desktop.kernels import fused
from voxtral_desktop.kernels.kv_int8 import LayerKV, quantize_kv
from voxtral_desktop.kernels.positions import rope_tables

parser = argparse.ArgumentParser()
parser.add_argument("--rounds", type=int, default=2)
parser.add_argument("--files", type=int, default=256)
parser.add_argument("--seconds", type=float, default=60.0)
parser.add_argument("--tiles", action="store_true")
args = parser.parse_args()
dev = torch.device("cuda")

TILES = [  # (query rows, keys per step, warps, stages)
    (64, 128, 4, None), (64, 64, 4, None), (128, 64, 8, None), (128, 128, 8, None), (64, 128, 4, 2),
    (64, 128, 4, 3), (128, 64, 4, None), (128, 64, 8, 3), (64, 64, 4, 3), (128, 128, 8, 2),
]  # fmt: skip


def kernels() -> None:
    B, H, T, D = 64, 32, 128, 64
    S = 750 + T - 1
    first = 2000
    pos = torch.arange(first, first + T, device=dev)
    held_pos = torch.arange(first + T - S, first + T, device=dev)
    held = torch.empty(S, dtype=torch.long, device=dev)
    held[held_pos % S] = held_pos
    q = torch.randn(B, H, T, D, device=dev, dtype=torch.bfloat16)
    (k8, ks), (v8, vs) = (quantize_kv(torch.randn(B, H, S, D, device=dev)) for _ in range(2))
    kv8 = LayerKV(k8, v8, ks, vs)
    kv16 = LayerKV(*kv8.dense(torch.bfloat16))
    visible = (pos[:, None] - held[None, :] >= 0) & (pos[:, None] - held[None, :] < 750)
    flops = 4 * B * H * int(visible.sum()) * D
    default = fused.CHUNK_TILES[D]
    for name, kv in (("int8", kv8), ("bf16", kv16)):
        us = timed(lambda kv=kv: fused.attention(q, kv, pos, held, 750))
        print(
            f"chunk attention, {name} ring, tile {default}: {us:7.1f} us {flops / us / 1e6:6.1f} TFLOP/s",
            flush=True,
        )
    want = fused.attention(q, kv16, pos, held, 750).float()
    for tile in TILES:
        fused.CHUNK_TILES[D] = tile
        try:
            err = ((fused.attention(q, kv16, pos, held, 750).float() - want).norm() / want.norm()).item()
            us = timed(lambda: fused.attention(q, kv16, pos, held, 750))
            print(
                f"  bf16 tile {tile}: {us:7.1f} us {flops / us / 1e6:6.1f} TFLOP/s (rel. diff {err:.1e})",
                flush=True,
            )
        except Exception as e:
            print(f"  bf16 tile {tile}: failed: {type(e).__name__}: {str(e)[:100]}", flush=True)
    fused.CHUNK_TILES[D] = default
    qkv = torch.randn(B, T, 3 * H * D, device=dev, dtype=torch.bfloat16)
    rot = rope_tables(pos, D, 1e6)
    slots = pos % S
    for name, kv in (("int8", kv8), ("bf16", kv16)):
        us = timed(lambda kv=kv: fused.rope_qkv_to_cache(qkv, rot, slots, kv, H, H, D))
        print(f"RoPE + cache write, {name} ring: {us:7.1f} us", flush=True)


ARMS = {  # name: (encoder_batch, encoder_int8)
    "64 streams a group, int8 (session 10)": (64, True),
    "64 streams a group, bf16": (64, False),
    "all streams one group, int8": (None, True),
}


def folder() -> None:
    model, tok = full_size_model(dense=True)
    model.kv_int8 = True
    stream = StreamConfig(480)
    audios = [noise(args.seconds, seed=10 + i) for i in range(args.files)]
    long = noise(300.0, seed=2)
    pieces = [long[i : i + 30 * SAMPLE_RATE] for i in range(0, len(long), 30 * SAMPLE_RATE)]
    tokens = {}
    names = list(ARMS) + list(ARMS)[:2]  # the first two again: drift
    for name in names:
        group, int8 = ARMS[name]
        spent = [0.0]

        def time_encoder(rows: BatchDecoder, spent: list[float] = spent) -> None:
            encode = rows._encode

            def timed_encode(*inputs):  # type: ignore[no-untyped-def]
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                out = encode(*inputs)
                torch.cuda.synchronize()
                spent[0] += time.perf_counter() - t0
                return out

            rows._encode = timed_encode  # type: ignore[method-assign]

        walls, ids = timed_batch_calls(
            model, tok, audios, args.rounds, on_decoder=time_encoder,
            encoder_batch=group or args.files, encoder_int8=int8,
        )  # fmt: skip
        same = sum(a == b for a, b in zip(tokens.setdefault("first", ids), ids, strict=True))
        peak = torch.cuda.max_memory_allocated() / 2**30
        rates = ", ".join(f"{w:.2f} s ({args.files * args.seconds / w:.1f}x)" for w in walls)
        print(f"{name}: folder {args.files} x {args.seconds:.0f} s {rates}, encoder phases "
              f"{spent[0] / args.rounds:.2f} s a call; same tokens as the first arm in "
              f"{same} of {args.files} files; peak GPU {peak:.1f} GiB", flush=True)  # fmt: skip
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    for int8 in (True, False, True, False):
        segments = BatchDecoder(
            model, tok, stream, batch=8, max_seconds=30.0, cuda_graphs=True, encoder_int8=int8
        )
        transcribe_segmented(segments, [long[: 3 * SAMPLE_RATE]], max_seconds=30.0)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        transcribe_segmented(segments, pieces, max_seconds=30.0, balance_tail=True)
        torch.cuda.synchronize()
        seg = time.perf_counter() - t0
        print(f"300 s in segments of <= 30 s x 8, encoder cache {segments.encoder_reason}: {seg:.2f} s "
              f"({300 / seg:.1f}x)", flush=True)  # fmt: skip
        del segments


if __name__ == "__main__":
    print(torch.__version__, torch.cuda.get_device_name(), flush=True)
    if args.tiles:
        kernels()
    folder()
