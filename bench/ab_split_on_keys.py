"""A split step's slices on attn_keys_kernel (`fused.SPLIT_ON_KEYS`, the keys as the mma's rows)
against attn_split_kernel, one process (device).

    python bench/ab_split_on_keys.py [--warm 100] [--replays 150] [--steps 150]

The full-size random model (bench/full_model.py) with two live sessions (CUDA graphs), captured
with each setting, fed the same `--warm` chunks of noise and saved (past 1,024 the decoder's step
runs its second graph, 32 slices; past ~190 the encoder's 750-frame window is full); then,
alternated 3x, each session's step graph replayed back to back from its saved state and `--steps`
fed steps timed (p50 / p95) with their tokens.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from tune_step_mma import ab_setting

from voxtral_desktop.kernels import fused

if __name__ == "__main__":
    ab_setting(fused, "SPLIT_ON_KEYS", {"split": None, "keys": fused.SPLIT_ON_KEYS})
