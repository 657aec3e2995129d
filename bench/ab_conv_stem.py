"""A step's conv stem on the unfold kernels (kernels/conv_stem.py: each conv's input unfolded
from its tail and new frames by one Triton kernel, conv1's GELU inside conv2's) against the torch
ops (the cats, the tails' copies, the unfolds' copies, conv1's GELU), one process (device).

    python bench/ab_conv_stem.py [--warm 100] [--replays 150] [--steps 150]

The full-size random model (bench/full_model.py) with two live sessions (CUDA graphs), captured
with `conv_stem.ENABLED` off and on. Each is fed the same `--warm` chunks of noise and saved; then,
alternated 3x, each session's step graph is replayed back to back from its saved state and
`--steps` fed steps timed (p50 / p95) with their tokens (GELU's erf is libdevice's in both, so
the tokens should not move; each session's must equal its own first run's).
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from tune_step_mma import ab_alternate, ab_setup, warmed

from voxtral_desktop.kernels import conv_stem


def main() -> None:
    args, model, tok, chunks = ab_setup()
    with torch.no_grad():
        sessions = {}
        for name, enabled in (("torch ops", False), ("unfolds", True)):
            conv_stem.ENABLED = enabled  # captured (and warmed) so
            sessions[name] = warmed(model, tok, chunks[: args.warm])
        conv_stem.ENABLED = True
        ab_alternate(sessions, chunks, args)


if __name__ == "__main__":
    main()
