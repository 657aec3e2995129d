"""One long file through `transcribe_stream` (the session the mic uses: the encoder in chunks,
then decoder-only CUDA graphs) with the twenty-fifth session's small kernels against the torch
ops they replace, one process (device).

    python bench/ab_file_path.py [--seconds 120]

Two live sessions of the full-size random model, one captured with the torch forms put back
(`bench/ab_step_ends.py`'s "torch" arm, kept in force while it runs, since the file path's
encoder chunks run eagerly) and one as the app runs; alternated 3x, each transcribes the same
noise (seed 2, 30 s chunks, as `voxtral-desktop bench`), timed, with its tokens compared.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from ab_step_ends import torch_forms
from full_model import on_the_gpu

from voxtral_desktop.benchmark import noise
from voxtral_desktop.config import SAMPLE_RATE, StreamConfig
from voxtral_desktop.engine.session import StreamingSession
from voxtral_desktop.engine.transcribe import transcribe_stream


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    model, tok = on_the_gpu()
    audio = noise(args.seconds, seed=2)
    chunks = [audio[i : i + 30 * SAMPLE_RATE] for i in range(0, len(audio), 30 * SAMPLE_RATE)]
    arms = {"torch": (True, True, True), "kernels": (False, False, False)}
    sessions = {}
    for name, forms in arms.items():
        with torch_forms(*forms), torch.no_grad():
            sessions[name] = StreamingSession(model, tok, StreamConfig(480), cuda_graphs=True)
            transcribe_stream(sessions[name], chunks[:1])  # warm-up
    first: list[int] = []
    with torch.no_grad():
        for _ in range(3):
            for name, forms in arms.items():
                with torch_forms(*forms):
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    result = transcribe_stream(sessions[name], chunks)
                    torch.cuda.synchronize()
                    seconds = time.perf_counter() - t0
                ids = [t.id for t in result.tokens]
                first = first or ids
                same = sum(a == b for a, b in zip(first, ids, strict=False))
                print(
                    f"{name:8s} {args.seconds / seconds:6.1f}x real time ({seconds:.2f} s) | "
                    f"{len(ids)} tokens, {same} as the first run's",
                    flush=True,
                )


if __name__ == "__main__":
    main()
