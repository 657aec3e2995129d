"""The chunk attention's tile over a bf16 ring, the folder's encoder cache (device).

    python bench/ab_chunk_tile.py [--folder] [--rounds 2]

The thirteenth session's tile sweep found (128 rows, 64 keys, 4 warps) faster than the landed
(64, 128, 4) on the folder's bf16 encoder ring (238 against 281 us) and slower on int8 rings;
its folder comparison ran with another change in both arms. `fused.CHUNK_TILES_HALF` now holds
the tile for keys in bf16/fp16. 1. The folder's encoder chunk (64 streams x 128 frames over a
wrapped 877-slot ring, bf16 and int8; CUDA graphs of 50 calls, best of 3) with and without it,
alternating twice, and each arm's largest difference from the first arm's output;
2. `--folder`: the bench's folder batch (256 x 60 s), without and with it, alternating.
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
add_folder_arguments(parser)
args = parser.parse_args()
print = functools.partial(print, flush=True)  # the log is read as it runs
LANDED = dict(fused.CHUNK_TILES_HALF)
ARMS = {"int8 rings' tile": {}, "bf16 ring's own tile": LANDED}


def use(tiles: dict) -> None:  # type: ignore[type-arg]
    fused.CHUNK_TILES_HALF.clear()
    fused.CHUNK_TILES_HALF.update(tiles)


def kernels() -> None:
    for int8 in (False, True):
        call = chunk_case(64, 32, 32, 128, 64, 750, int8)
        outs, times = {}, {}
        for _ in range(2):
            for arm, tiles in ARMS.items():
                use(tiles)
                outs[arm] = call().float()
                times.setdefault(arm, []).append(graph_time_us(call, calls=50, reps=3, pick=min))
        first = next(iter(outs.values()))
        diffs = {arm: (out - first).abs().max().item() for arm, out in outs.items()}
        shown = "; ".join(
            f"{arm} {' / '.join(f'{t:.1f}' for t in ts)} us (diff {diffs[arm]:.1e})"
            for arm, ts in times.items()
        )
        print(f"folder's encoder chunk 64 x 128 frames, {'int8' if int8 else 'bf16'} ring: {shown}")
    use(LANDED)


def folder() -> None:
    from full_model import folder_arms

    arms = [(arm, functools.partial(use, tiles)) for arm, tiles in ARMS.items()]
    folder_arms(arms + arms, args.files, args.seconds, args.rounds)
    use(LANDED)


if __name__ == "__main__":
    print(torch.__version__, torch.cuda.get_device_name())
    kernels()
    if args.folder:
        folder()
