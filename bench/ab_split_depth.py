"""How many programs a one-stream step's attention splits its keys among, at several depths of
the decoder's cache, same process (device).

    python bench/ab_split_depth.py [--depths 100,1000,8000] [--caps 8,16,32,64] [--replays 100] [--steps 100]

The step's graph is captured once for the whole ring, and `fused.SPLIT_STEP`'s cap sets the
programs a KV head's keys are split among (the fill on the device sizes the slices, each a
multiple of the tile's 32 keys, so a shallow cache uses only the first few). The full-size random
model (bench/full_model.py) with one live session per depth, each fed `--depth` positions of
noise and saved; then for each depth, each cap alternated 3x: the step's graph captured again,
replayed back to back from the saved state, then `--steps` fed steps (p50 / p95) and their tokens
against the first run's at that depth.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

import torch

sys.path.insert(0, os.path.dirname(__file__))
from full_model import on_the_gpu
from tune_step_mma import measure_arm, noise_chunks, recapture, warmed

from voxtral_desktop.kernels import fused


def alternate_caps(depths_: str, caps_: str, steps: int, set_cap: Callable[[int], None]) -> None:
    """The command line's depths and caps (defaults `depths_`, `caps_`), each cap set by `set_cap`
    and alternated 3x per depth as the module docstring says; the caller restores the app's."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--depths", default=depths_, help="positions fed before the state is saved")
    parser.add_argument("--caps", default=caps_, help="programs a head's keys are split among (at most)")
    parser.add_argument("--replays", type=int, default=100)
    parser.add_argument("--steps", type=int, default=steps)
    args = parser.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    caps = [int(c) for c in args.caps.split(",")]
    model, tok = on_the_gpu()
    chunks = noise_chunks(max(depths) + args.steps + 1)
    with torch.no_grad():
        for depth in depths:
            session, saved = warmed(model, tok, chunks[:depth])
            fed = chunks[depth : depth + args.steps]
            first: list[int] = []
            for _ in range(3):
                for cap in caps:
                    set_cap(cap)
                    recapture(session, saved)
                    name = f"{depth:5d} deep, {cap:2d} slices"
                    first = measure_arm(name, session, saved, fed, args.replays, first)
            del session, saved
            torch.cuda.empty_cache()


def main() -> None:
    tile, app_cap = fused.SPLIT_STEP

    def set_cap(cap: int) -> None:
        fused.SPLIT_STEP = (tile, cap)

    alternate_caps("100,1000,8000", "8,16,32,64", 100, set_cap)
    fused.SPLIT_STEP = (tile, app_cap)


if __name__ == "__main__":
    main()
