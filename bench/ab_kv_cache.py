"""The live step over int8 KV caches (the app's choice on CUDA) against bf16 caches, one process
(device).

    python bench/ab_kv_cache.py [--warm 100] [--replays 150] [--steps 150]
    python bench/ab_kv_cache.py --warm 8000   # near the decoder's full window (8,192 positions)

The full-size random model (bench/full_model.py) with two live sessions (CUDA graphs), one per
cache kind (`VoxtralModel.kv_int8` is read when a session allocates its caches), each fed the
same `--warm` chunks of noise and saved; then, alternated 3x, each session's step graph replayed
back to back from its saved state and `--steps` fed steps (p50 / p95) with their tokens.
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from tune_step_mma import ab_alternate, ab_setup, warmed


def main() -> None:
    args, model, tok, chunks = ab_setup()
    sessions = {}
    with torch.no_grad():
        for name, int8 in (("int8", True), ("bf16", False)):
            model.kv_int8 = int8
            sessions[f"{name} caches"] = warmed(model, tok, chunks[: args.warm])
        ab_alternate(sessions, chunks, args)


if __name__ == "__main__":
    main()
