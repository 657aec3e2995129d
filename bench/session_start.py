"""What starting a live session costs, with the step's graphs for one or two depths (device).

    python bench/session_start.py

The full-size random model (bench/full_model.py); a live session (CUDA graphs) is created three
times, alternating: the app's graphs (`fused.SPLIT_STEP_DEEP`: one for the first 1,024 decoder
slots, one for the whole ring) and one graph for the whole ring (the threshold set past it). The
first creation also compiles the kernels; the later ones show what the capture itself takes.
"""

from __future__ import annotations

import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from full_model import on_the_gpu

from voxtral_desktop.config import StreamConfig
from voxtral_desktop.engine.session import StreamingSession
from voxtral_desktop.kernels import fused


def main() -> None:
    model, tok = on_the_gpu()
    app = fused.SPLIT_STEP_DEEP
    for round_ in range(3):
        for name, deep in (("two graphs", app), ("one graph", (1 << 30, app[1]))):
            fused.SPLIT_STEP_DEEP = deep
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            session = StreamingSession(model, tok, StreamConfig(480), cuda_graphs=True)
            torch.cuda.synchronize()
            assert session.graph is not None
            print(
                f"round {round_}, {name} (buckets {session.graph.buckets}): {time.perf_counter() - t0:.2f} s",
                flush=True,
            )
            del session
            torch.cuda.empty_cache()
    fused.SPLIT_STEP_DEEP = app


if __name__ == "__main__":
    main()
