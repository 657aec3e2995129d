"""The encoder's w2 (80 tiles of 16 rows) with its blocks one to an SM, same process (device).

    python bench/ab_spread_blocks.py [--depth 300] [--replays 100] [--steps 50] [--kib 120]

bench/step_timeline.py showed the 80 blocks of the encoder's w2 landing two to an SM on some SMs
(the kernel before still holds the others' room when they launch), and those blocks' loops
taking 3.0-3.2 us against 2.4 us alone. Its staged variant already takes dynamic shared memory
(`mma_q4.staged_shared_bytes`); asking for `--kib` KiB instead leaves room for one block an SM.
The full-size random model (bench/full_model.py), one live session fed `--depth` positions of
noise and saved; the app's launch and the spread one alternated 3x: the step's graph captured
again, replayed back to back, then `--steps` fed steps and their tokens against the first arm's.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

import torch

sys.path.insert(0, os.path.dirname(__file__))
from full_model import on_the_gpu
from tune_step_mma import alternate_fed, noise_chunks, warmed

from voxtral_desktop.kernels import mma_q4

ENCODER_HIDDEN = 5120  # the encoder's w2 reads this many columns


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--depth", type=int, default=300, help="positions fed before the state is saved")
    parser.add_argument("--replays", type=int, default=100)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--kib", type=int, default=120, help="shared memory a spread block asks for")
    args = parser.parse_args()
    model, tok = on_the_gpu()
    chunks = noise_chunks(args.depth + args.steps)
    original = mma_q4.staged_shared_bytes

    def spread(warps: int, k: int, rows: int) -> int:
        own = original(warps, k, rows)
        return max(own, args.kib * 1024) if k == ENCODER_HIDDEN else own

    def use(sizes: Callable[[int, int, int], int]) -> Callable[[], None]:
        def apply() -> None:
            mma_q4.staged_shared_bytes = sizes

        return apply

    with torch.no_grad():
        session, saved = warmed(model, tok, chunks[: args.depth])
        arms = {"app": use(original), f"spread {args.kib} KiB": use(spread)}
        alternate_fed(session, saved, chunks[args.depth :], arms, args.replays)
    mma_q4.staged_shared_bytes = original


if __name__ == "__main__":
    main()
