"""The Q4 mma kernel's register loop with running activation pointers (q4_mma.cu) against the loop
before it (`Q4_LOOP_V1`), one process (device).

    python bench/ab_q4_loop.py [--warm 100] [--replays 150] [--steps 150]

In the SASS for sm_90 the loop before recomputed each iteration's 64-bit activation addresses
(about 18 of ~100 instructions an iteration at unroll 3; the kernel is bound by its
instructions more than by its loads: bench/loop_bound.py). The full-size random model
(bench/full_model.py) with two live sessions (CUDA graphs), one captured with each loop's
kernels, fed the same `--warm` chunks and saved; then, alternated 3x, each step graph replayed
back to back and `--steps` fed steps timed (p50 / p95) with their tokens.
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from tune_step_mma import ab_alternate, ab_setup, warmed

from voxtral_desktop.kernels import mma_q4

ORIGINAL_SOURCE = mma_q4._source
COMPILE = mma_q4._kernel.__wrapped__  # the uncached compile of one variant


def compiled_as(prefix: str, kernels: dict) -> None:
    """Variants compiled from here on with `prefix` before q4_mma.cu, each kept in `kernels`
    (a captured graph launches them after the prefix has changed)."""

    def source(variants) -> str:
        return prefix + ORIGINAL_SOURCE(variants)

    def kernel(*args):
        key = (prefix, args)
        if key not in kernels:
            mma_q4._source = source
            kernels[key] = COMPILE(*args)
        return kernels[key]

    mma_q4._source = source
    mma_q4._kernel = kernel  # type: ignore[assignment]


def main() -> None:
    args, model, tok, chunks = ab_setup()
    kernels: dict = {}
    with torch.no_grad():
        sessions = {}
        for name, prefix in (("loop v1", "#define Q4_LOOP_V1\n"), ("pointers", "")):
            compiled_as(prefix, kernels)
            sessions[name] = warmed(model, tok, chunks[: args.warm])
        ab_alternate(sessions, chunks, args)


if __name__ == "__main__":
    main()
