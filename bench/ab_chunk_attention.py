"""The chunk attention's CUDA-core diet, one switch at a time (device).

    python bench/ab_chunk_attention.py [--tiles] [--folder] [--rounds 2]

An encoder chunk (D = 64) costs the tensor cores 256 flops a score and the CUDA cores about a
dozen instructions, so `attn_split_kernel` on a chunk may be bound by the latter (the eleventh
session measured it at 155 TFLOP/s on a bf16 ring, against 310 for SDPA flash with no mask).
Two switches cut those instructions:
- `fused.CHUNK_LOG2`: scores in log2 units, scale * log2(e) (and an int8 key's scale) folded into
  the one multiply a score already had, so exp2 needs no extra multiply;
- `fused.CHUNK_FULL`: a block of keys that every query row of the program sees whole (most of
  a 750-frame window) skips the visibility test: no compares, ands or selects.

1. The kernels at the file paths' chunk shapes (CUDA graphs of 50 calls, best of 3), the arms
   alternating twice: the folder's encoder chunk (64 streams x 128 frames, 877-slot ring, int8
   and bf16), a long file's segments (8 x 256 frames, 1,005 slots) and a live prompt (the
   decoder's 39 positions, 32 heads on 8 KV heads of 128). Prints each arm's largest
   difference from the first arm's output.
2. `--tiles`: `fused.CHUNK_TILES` swept with both switches on, on each of those shapes.
3. `--folder`: the bench's folder batch (256 x 60 s), switches off and on alternating.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from attention_cases import chunk_case
from full_model import add_folder_arguments
from tune_q4 import graph_time_us

from voxtral_desktop.kernels import fused

parser = argparse.ArgumentParser()
parser.add_argument("--tiles", action="store_true")
add_folder_arguments(parser)
args = parser.parse_args()
print = functools.partial(print, flush=True)  # the log is read as it runs
ARMS = {"as before": (False, False), "log2": (True, False), "log2 + full blocks": (True, True)}


def switch(log2: bool, full: bool) -> None:
    fused.CHUNK_LOG2, fused.CHUNK_FULL = log2, full


def timed_us(fn) -> float:  # type: ignore[no-untyped-def]
    """Best of 3 replays of a CUDA graph of 50 calls."""
    return graph_time_us(fn, calls=50, reps=3, pick=min)


CASES = {
    "folder's encoder chunk 64 x 128 frames, int8 ring": (64, 32, 32, 128, 64, 750, True),
    "folder's encoder chunk 64 x 128 frames, bf16 ring": (64, 32, 32, 128, 64, 750, False),
    "segments' encoder chunk 8 x 256 frames, int8 ring": (8, 32, 32, 256, 64, 750, True),
    # over the whole 8,230-slot ring, most of it empty (a session's prompt reads only filled slots)
    "live prompt, decoder: 39 positions, int8": (1, 32, 8, 39, 128, 8192, True),
}


def kernels() -> None:
    for name, shape in CASES.items():
        call = chunk_case(*shape)
        outs, times = {}, {}
        for _ in range(2):  # each arm twice, alternating: drift shows
            for arm, flags in ARMS.items():
                switch(*flags)
                outs[arm] = call()
                times.setdefault(arm, []).append(timed_us(call))
        base = outs["as before"].float()
        diffs = {arm: (out.float() - base).abs().max().item() for arm, out in outs.items()}
        shown = "; ".join(
            f"{arm} {' / '.join(f'{t:.1f}' for t in ts)} us (diff {diffs[arm]:.1e})"
            for arm, ts in times.items()
        )
        print(f"{name}: {shown}")
    switch(True, True)


def tiles() -> None:
    """Each case on its head size's tiles (query rows, keys a step, warps, stages), both switches on."""
    for name, shape in CASES.items():
        call = chunk_case(*shape)
        D = shape[4]
        landed = fused.CHUNK_TILES[D]
        grid = (
            [(64, 128, 4, None), (64, 128, 4, 3), (64, 64, 4, None), (128, 128, 8, None), (128, 64, 8, None),
             (128, 64, 4, None), (128, 64, 4, 2), (128, 64, 4, 3), (128, 32, 4, None), (128, 128, 4, None)]
            if D == 64
            else [(64, 64, 8, None), (64, 64, 4, None), (128, 64, 8, None), (128, 32, 4, None),
                  (64, 32, 4, None), (128, 64, 4, None)]
        )  # fmt: skip
        for tile in grid:
            fused.CHUNK_TILES[D] = tile
            try:
                call()
                print(f"{name}, tile {tile}: {timed_us(call):.1f} us")
            except Exception as e:  # a tile that does not fit is a result too
                print(f"{name}, tile {tile}: failed, {type(e).__name__}: {str(e)[:120]}")
        fused.CHUNK_TILES[D] = landed


def folder() -> None:
    from full_model import folder_arms

    def use(flags: tuple[bool, bool]):  # type: ignore[no-untyped-def]
        return lambda: switch(*flags)

    arms = [("chunk as before", use((False, False))), ("log2 + full blocks", use((True, True)))]
    folder_arms(arms + arms, args.files, args.seconds, args.rounds)
    switch(True, True)


if __name__ == "__main__":
    print(torch.__version__, torch.cuda.get_device_name())
    kernels()
    if args.tiles:
        tiles()
    if args.folder:
        folder()
