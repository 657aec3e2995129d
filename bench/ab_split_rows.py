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

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from full_model import full_size_model
from tune_step_mma import measure_arm, noise_chunks, recapture, warmed

from voxtral_desktop.device import host_threads_for
from voxtral_desktop.kernels import fused

ENCODER_ROWS = 4  # frames a step adds to the encoder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--depths", default="100,300", help="positions fed before the state is saved")
    parser.add_argument("--caps", default="8,4,16,32", help="programs a head's keys are split among")
    parser.add_argument("--replays", type=int, default=100)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    depths = [int(d) for d in args.depths.split(",")]
    caps = [int(c) for c in args.caps.split(",")]
    torch.set_num_threads(host_threads_for(torch.device("cuda")))
    print(torch.cuda.get_device_name(), flush=True)
    model, tok = full_size_model()
    chunks = noise_chunks(max(depths) + args.steps + 1)
    app = fused.SPLIT_STEP_ROWS[ENCODER_ROWS]
    with torch.no_grad():
        for depth in depths:
            session, saved = warmed(model, tok, chunks[:depth])
            fed = chunks[depth : depth + args.steps]
            first: list[int] = []
            for _ in range(3):
                for cap in caps:
                    fused.SPLIT_STEP_ROWS[ENCODER_ROWS] = cap
                    recapture(session, saved)
                    name = f"{depth:4d} deep, {cap:2d} slices"
                    first = measure_arm(name, session, saved, fed, args.replays, first)
            del session, saved
            torch.cuda.empty_cache()
    fused.SPLIT_STEP_ROWS[ENCODER_ROWS] = app


if __name__ == "__main__":
    main()
