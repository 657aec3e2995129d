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

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from full_model import full_size_model
from tune_step_mma import measure_arm, noise_chunks, warmed

from voxtral_desktop.device import host_threads_for


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--warm", type=int, default=100, help="positions fed before the state is saved")
    parser.add_argument("--replays", type=int, default=150)
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    torch.set_num_threads(host_threads_for(torch.device("cuda")))
    print(torch.cuda.get_device_name(), flush=True)
    model, tok = full_size_model()
    chunks = noise_chunks(args.warm + args.steps + 1)
    sessions = {}
    with torch.no_grad():
        for name, int8 in (("int8", True), ("bf16", False)):
            model.kv_int8 = int8
            sessions[name] = warmed(model, tok, chunks[: args.warm])
        first: list[int] = []
        fed = chunks[args.warm : args.warm + args.steps]
        for _ in range(3):
            for name, (session, saved) in sessions.items():
                first = measure_arm(f"{name} caches", session, saved, fed, args.replays, first)


if __name__ == "__main__":
    main()
