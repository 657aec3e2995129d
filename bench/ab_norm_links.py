"""Linked norms in the streaming step against norm kernels, same process (device).

    python bench/ab_norm_links.py [--replays 150] [--steps 300] [--staged]

The full-size random model's live session (bench/tune_step_mma.py's `warm_session`) with
`kernels/linear.NORM_LINKS` on (each layer's w2 adds the residual and readies the next layer's
attention norm, the next wqkv applies it: kernels/norm_link.py) and off, alternated 3x from the
same saved state: the step's graph captured again, replayed back to back, then `--steps` fed
steps (p50 / p95) and their tokens against the first run's. The links move where the bf16
rounding falls, so the tokens of random weights may part after a near-tie.

--staged: the same for the encoder's wo on weights staged in shared memory (kernels/mma_q4.py's
H200 table, unroll 0) against registers (unroll 1), the links on; the tokens must be equal.
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


def encoder_wo(unroll: int | None) -> Callable[[], None]:
    """None: the app's table; else the encoder's wo (16 warps) at this unroll."""

    def apply() -> None:
        mma_q4.OVERRIDES.clear()
        if unroll is not None:
            mma_q4.OVERRIDES[(1280, 2048, 1, False)] = (16, unroll)

    return apply


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replays", type=int, default=150)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--staged", action="store_true", help="the encoder's wo staged or not instead")
    args = parser.parse_args()
    session, saved, chunks = warm_session(100)
    arms = {"kernels": links(False), "linked": links(True)}
    if args.staged:
        arms = {"registers": encoder_wo(1), "staged": encoder_wo(None)}
    with torch.no_grad():
        alternate_fed(session, saved, chunks[: args.steps], arms, args.replays)
    linear.NORM_LINKS = True
    mma_q4.OVERRIDES.clear()


if __name__ == "__main__":
    main()
