"""How many programs the encoder's step attention (4 query rows, one stream) splits a head's keys
among, at two depths, same process (device).

    python bench/ab_split_rows.py [--depths 100,300] [--caps 8,4,16,32] [--replays 100] [--steps 50]

`fused.SPLIT_STEP_ROWS[4]` sets the slices of a 4-row step only (the decoder's 1-row step keeps
its own). Before the twenty-fourth session the general rule gave the encoder's ring of 1,005
slots 8 (each slice at least 128 keys); the app now sets 16. The encoder's ring holds its
750-frame window after 188 decoder positions (15 s), so a depth past that is its steady state.
The full-size random model (bench/full_model.py), one live session per depth fed `--depth`
positions of noise and saved; each cap alternated 3x: the step's graph captured again, replayed
back to back, then `--steps` fed steps and their tokens against the first arm's.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from ab_split_depth import alternate_caps

from voxtral_desktop.kernels import fused

ENCODER_ROWS = 4  # frames a step adds to the encoder


def main() -> None:
    app = fused.SPLIT_STEP_ROWS[ENCODER_ROWS]

    def set_cap(cap: int) -> None:
        fused.SPLIT_STEP_ROWS[ENCODER_ROWS] = cap

    alternate_caps("100,300", "8,4,16,32", 50, set_cap)
    fused.SPLIT_STEP_ROWS[ENCODER_ROWS] = app


if __name__ == "__main__":
    main()
