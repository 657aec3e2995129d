"""A streaming step's log-mel in three Triton kernels (kernels/mel_frames.py: the pinned samples
read in, the DFT and power, the filter bank and log) against the torch ops before them (a copy
node, the frames' copy, two cuBLAS sgemms with their split-K reductions and the elementwise
kernels), one process (device).

    python bench/ab_mel_frames.py [--warm 100] [--replays 150] [--steps 150]

The full-size random model (bench/full_model.py) with two live sessions (CUDA graphs), captured
with `mel_frames.ENABLED` off and on. Each is fed the same `--warm` chunks of noise and saved;
then, alternated 3x, each session's step graph is replayed back to back from its saved state and
`--steps` fed steps timed (p50 / p95) with their tokens (the log-mel's last bits differ between
the two, so the tokens may too; each session's must equal its own first run's).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from tune_step_mma import ab_setting

from voxtral_desktop.kernels import mel_frames

if __name__ == "__main__":
    ab_setting(mel_frames, "ENABLED", {"torch ops": False, "kernels": True})
