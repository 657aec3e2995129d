"""Time to the first token with a step's log-mel in `kernels/mel_frames.py`'s kernels and in the
torch ops, one process (device). The twenty-sixth session's bench drew 59.95 and 71.51 ms for the
first token against 25.7-49.9 ms before; the 8-frame log-mel of the prompt's last position is
what changed on that path.

    python bench/ab_first_token.py [--rounds 5]

The full-size random model (bench/full_model.py) with two live sessions (CUDA graphs), captured
with `mel_frames.ENABLED` off and on (the prompt's eager log-mel follows the switch too). Each
round resets each session and feeds noise in 80 ms chunks, as `voxtral-desktop bench` does, until
the first token; the feed that emits it is timed (host clock, GPU synchronised). Sessions
alternate every round; each arm's times and median are printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from full_model import on_the_gpu

from voxtral_desktop.benchmark import noise
from voxtral_desktop.config import SAMPLE_RATE, SAMPLES_PER_TOKEN, StreamConfig
from voxtral_desktop.engine.session import StreamingSession
from voxtral_desktop.kernels import mel_frames


def first_token_ms(session: StreamingSession, seed: int) -> float:
    session.reset()
    audio = noise((session.config.n_prompt_tokens + 4) * SAMPLES_PER_TOKEN / SAMPLE_RATE, seed=seed)
    for i in range(0, len(audio) - SAMPLES_PER_TOKEN, SAMPLES_PER_TOKEN):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        session.feed(audio[i : i + SAMPLES_PER_TOKEN])
        torch.cuda.synchronize()
        if session.state.n_decoded > 0:
            return (time.perf_counter() - t0) * 1e3
    raise RuntimeError("no token after the prompt's audio")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    model, tok = on_the_gpu()
    sessions = {}
    with torch.no_grad():
        for name, enabled in (("torch ops", False), ("kernels", True)):
            mel_frames.ENABLED = enabled  # captured so; the eager log-mel reads the switch per call
            sessions[name] = (StreamingSession(model, tok, StreamConfig(480), cuda_graphs=True), enabled)
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for r in range(args.rounds + 1):  # round 0 warms both up and is not counted
            for name, (session, enabled) in sessions.items():
                mel_frames.ENABLED = enabled
                ms = first_token_ms(session, seed=r)
                if r:
                    times[name].append(ms)
        mel_frames.ENABLED = True
    for name, ms in times.items():
        row = " ".join(f"{t:.2f}" for t in ms)
        print(f"{name:9s} first token (ms): {row} | median {np.median(ms):.2f}", flush=True)


if __name__ == "__main__":
    main()
