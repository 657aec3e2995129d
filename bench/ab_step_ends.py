"""The step's two ends as the twenty-fifth session made them (rotations from cached frequencies,
the token's row and the audio vector in one Triton kernel, the argmax in two) against the torch
ops they replace, one process (device).

    python bench/ab_step_ends.py [--warm 100] [--replays 150] [--steps 150]

The full-size random model (bench/full_model.py) with two live sessions (CUDA graphs): one
captured with the torch forms put back (`rope_tables` computing its frequencies each call,
`mma_q4.embed_rows` then an add, `torch.argmax` then two copies), one as the app runs. Each is fed
the same `--warm` chunks of noise and saved; then, alternated 3x, each session's step graph is
replayed back to back from its saved state and `--steps` fed steps timed (p50 / p95) with their
tokens, which must be the same in both.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager

import torch

sys.path.insert(0, os.path.dirname(__file__))
from full_model import full_size_model
from tune_step_mma import measure_arm, noise_chunks, warmed

from voxtral_desktop.device import host_threads_for
from voxtral_desktop.kernels import tokens
from voxtral_desktop.model import decoder, encoder


def rope_tables_each_call(positions: torch.Tensor, head_dim: int, theta: float) -> torch.Tensor:
    """`layers.rope_tables` as it was: the frequencies and the ones made on every call."""
    steps = torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device)
    inv_freq = 1.0 / (theta ** (steps / head_dim))
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]
    return torch.polar(torch.ones_like(angles), angles)


@contextmanager
def torch_ends():
    saved = encoder.rope_tables, decoder.rope_tables, tokens.embed_applies, tokens.greedy_applies
    encoder.rope_tables = decoder.rope_tables = rope_tables_each_call
    tokens.embed_applies = tokens.greedy_applies = lambda x: False
    try:
        yield
    finally:
        encoder.rope_tables, decoder.rope_tables, tokens.embed_applies, tokens.greedy_applies = saved


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
    with torch.no_grad():
        with torch_ends():  # captured (and warmed) with the torch forms
            sessions = {"torch": warmed(model, tok, chunks[: args.warm])}
        sessions["kernels"] = warmed(model, tok, chunks[: args.warm])
        first: list[int] = []
        fed = chunks[args.warm : args.warm + args.steps]
        for _ in range(3):
            for name, (session, saved) in sessions.items():
                first = measure_arm(name, session, saved, fed, args.replays, first)


if __name__ == "__main__":
    main()
