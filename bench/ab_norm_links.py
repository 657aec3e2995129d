"""Linked norms in the streaming step against norm kernels, same process (device).

    python bench/ab_norm_links.py [--replays 150] [--steps 300]

The full-size random model's live session (bench/tune_step_mma.py's `warm_session`) with
`kernels/linear.NORM_LINKS` on (each layer's w2 adds the residual and readies the next layer's
attention norm, the next wqkv applies it: kernels/norm_link.py) and off, alternated 3x from the
same saved state: the step's graph captured again, replayed back to back, then `--steps` fed
steps (p50 / p95) and their tokens against the first run's. The links move where the bf16
rounding falls, so the tokens of random weights may part after a near-tie.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

import torch

sys.path.insert(0, os.path.dirname(__file__))
from tune_step_mma import alternate_fed, warm_session

from voxtral_desktop.kernels import linear


def links(on: bool) -> Callable[[], None]:
    def apply() -> None:
        linear.NORM_LINKS = on

    return apply


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replays", type=int, default=150)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    session, saved, chunks = warm_session(100)
    with torch.no_grad():
        alternate_fed(
            session,
            saved,
            chunks[: args.steps],
            {"kernels": links(False), "linked": links(True)},
            args.replays,
        )
    linear.NORM_LINKS = True


if __name__ == "__main__":
    main()
