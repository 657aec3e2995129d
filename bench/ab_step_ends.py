"""The step's small kernels outside its layers as the twenty-fifth session made them against the
torch ops they replace, one process (device).

    python bench/ab_step_ends.py [--warm 100] [--replays 150] [--steps 150]

The full-size random model (bench/full_model.py) with four live sessions (CUDA graphs), each
captured with:
- "torch": the torch forms put back (the caches' `begin` then `rope_tables` making its
  frequencies each call, `mma_q4.embed_rows` then an add, `torch.argmax` then two copies, the
  log-mel's squares, add, clamps, log10, add, division and cast);
- "ends": the token's row and the audio vector in one Triton kernel and the argmax in two
  (kernels/tokens.py), the rotations from cached frequencies;
- "positions": also each cache's positions, slots and rotations in one kernel
  (kernels/positions.py);
- "kernels": as the app runs, also the log-mel's elementwise work in two (kernels/mel_tail.py).
Each is fed the same `--warm` chunks of noise and saved; then, alternated 3x, each session's step
graph is replayed back to back from its saved state and `--steps` fed steps timed (p50 / p95)
with their tokens, which must be the same in all three.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

import torch

sys.path.insert(0, os.path.dirname(__file__))
from tune_step_mma import ab_alternate, ab_setup, warmed

from voxtral_desktop.kernels import mel_tail, positions, tokens
from voxtral_desktop.model import cache


def rope_tables_each_call(pos: torch.Tensor, head_dim: int, theta: float) -> torch.Tensor:
    """`rope_tables` as it was: the frequencies and the ones made on every call."""
    steps = torch.arange(0, head_dim, 2, dtype=torch.float32, device=pos.device)
    inv_freq = 1.0 / (theta ** (steps / head_dim))
    angles = pos.to(torch.float32)[:, None] * inv_freq[None, :]
    return torch.polar(torch.ones_like(angles), angles)


SWITCHES = (
    (cache, "rope_tables"),
    (cache, "advance_applies"),
    (tokens, "embed_applies"),
    (tokens, "greedy_applies"),
    (mel_tail, "applies"),
)


@contextmanager
def torch_forms(ends: bool, positions_too: bool, mel_too: bool):
    saved = [getattr(module, name) for module, name in SWITCHES]
    if ends:
        cache.rope_tables = rope_tables_each_call
        tokens.embed_applies = tokens.greedy_applies = lambda x: False
    if positions_too:
        cache.advance_applies = lambda x: False
    if mel_too:
        mel_tail.applies = lambda x: False
    try:
        yield
    finally:
        for (module, name), value in zip(SWITCHES, saved, strict=True):
            setattr(module, name, value)


def main() -> None:
    args, model, tok, chunks = ab_setup()
    arms = {
        "torch": (True, True, True),
        "ends": (False, True, True),
        "positions": (False, False, True),
        "kernels": (False, False, False),
    }
    assert positions.advance_applies(torch.zeros((), device="cuda"))
    with torch.no_grad():
        sessions = {}
        for name, forms in arms.items():
            with torch_forms(*forms):  # captured (and warmed) so
                sessions[name] = warmed(model, tok, chunks[: args.warm])
        ab_alternate(sessions, chunks, args)


if __name__ == "__main__":
    main()
