"""Linked norms in the streaming step against norm kernels, same process (device).

    python bench/ab_norm_links.py [--replays 150] [--steps 300] [--staged]

The full-size random model's live session (bench/tune_step_mma.py's `warm_session`) with
`kernels/linear.NORM_LINKS` on (each layer's w2 adds the residual and readies the next layer's
attention norm, the next wqkv applies it: kernels/norm_link.py) and off, alternated 3x from the
same saved state: the step's graph captured again, replayed back to back, then `--steps` fed
steps (p50 / p95) and their tokens against the first run's. The links move where the bf16
rounding falls, so the tokens of random weights may part after a near-tie.

--staged: the same for the encoder's wo and w2 on weights and rows staged in shared memory
(kernels/mma_q4.py's H200 table, unroll 0) against registers (their unroll before: 1 and 2),
the links on; the tokens must be equal.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

import torch

sys.path.insert(0, os.path.dirname(__file__))
from tune_step_mma import alternate_fed, warm_session

from voxtral_desktop.kernels import linear, mma_q4


def links(on: bool) -> Callable[[], None]:
    def apply() -> None:
        linear.NORM_LINKS = on

    return apply


def encoder_registers(on: bool) -> Callable[[], None]:
    """On: the encoder's wo and w2 (16 warps) on registers as before staging; off: the app's table."""

    def apply() -> None:
        mma_q4.OVERRIDES.clear()
        if on:
            mma_q4.OVERRIDES[(1280, 2048, 1, False)] = (16, 1)
            mma_q4.OVERRIDES[(1280, 5120, 1, False)] = (16, 2)

    return apply


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replays", type=int, default=150)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--staged", action="store_true", help="the encoder's wo and w2 staged or not")
    args = parser.parse_args()
    session, saved, chunks = warm_session(100)
    arms = {"kernels": links(False), "linked": links(True)}
    if args.staged:
        arms = {"registers": encoder_registers(True), "staged": encoder_registers(False)}
    with torch.no_grad():
        alternate_fed(session, saved, chunks[: args.steps], arms, args.replays)
    linear.NORM_LINKS = True
    mma_q4.OVERRIDES.clear()


if __name__ == "__main__":
    main()
