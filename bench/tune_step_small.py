"""The small kernels' launch settings, chosen inside the streaming step's CUDA graph (device).

    python bench/tune_step_small.py [--replays 150] [--steps 300] [--against] [--knobs A,B]

As bench/tune_step_mma.py does for the Q4 kernel's variants: the full-size random model's live
session is warmed up and its state saved; for each setting of the Triton kernels the step
launches for a step's few rows (`kernels/fused.py`: the norms' warps, the split attention's
tile and most slices, the RoPE/cache kernel's elements and warps; the combine kernel's warps
changed nothing in the nineteenth session, within 3 us),
one knob at a time with the others at their defaults, the step's graph is captured again and
replayed back to back from the saved state. Then the best value of every knob that beat its
default by more than 2 us, all together, against the defaults, alternated 3x: replays,
`args.steps` fed steps (p50 / p95) and their tokens. `--against` skips the sweep and alternates
the defaults with the eighteenth session's settings the same way.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

import torch

sys.path.insert(0, os.path.dirname(__file__))
from tune_step_mma import alternate_fed, recapture, replay_us, warm_session

from voxtral_desktop.kernels import fused

# The knobs of launches of <= fused.STEP_ROWS rows. The eighteenth session ran this script's
# first form, which swept the knobs of every launch (NORM_WARPS, SPLIT_TILE, SPLIT_MAX,
# ROPE_ELEMENTS, ROPE_WARPS; bench/h200_session18/tune_step_small.log); its choices became these
# step-only settings' defaults, which the step's graph launches exactly as it measured them. The
# nineteenth session's sweeps: bench/h200_session19/tune_step_small.log, call2/tune_step_small.log.
KNOBS: dict[str, list] = {
    "NORM_WARPS_STEP": [16, 8, 32],
    "SPLIT_STEP": [
        ((32, 2, None), 8),
        ((32, 1, None), 8),
        ((16, 2, None), 8),
        ((16, 1, None), 8),
        ((32, 2, None), 16),
        ((32, 2, None), 4),
        ((64, 2, None), 8),
        ((32, 2, 2), 8),
    ],
    "ROPE_STEP": [(1024, 4), (1024, 8), (1024, 2), (2048, 4), (2048, 8)],
    # a split step's slices on attn_keys_kernel (twenty-seventh session), or attn_split_kernel
    "SPLIT_ON_KEYS": [None, (32, 4, None), (16, 1, None), (16, 2, None), (32, 2, None), (16, 4, None)],
}

# The step settings the eighteenth session landed, for `--against`.
EIGHTEENTH: dict[str, object] = {
    "NORM_WARPS_STEP": 8,
    "ROPE_STEP": (2048, 4),
    "SPLIT_STEP": ((32, 4, None), 8),
}


def use(settings: dict[str, object]) -> Callable[[], None]:
    """A function that sets `fused`'s knobs to `settings`."""

    def apply() -> None:
        for name, value in settings.items():
            setattr(fused, name, value)

    return apply


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--replays", type=int, default=150)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument(
        "--against", action="store_true", help="no sweep: the defaults against EIGHTEENTH's, alternated"
    )
    parser.add_argument("--knobs", default=",".join(KNOBS), help="the knobs to sweep, comma-separated")
    args = parser.parse_args()
    knobs = {name: KNOBS[name] for name in args.knobs.split(",")}
    session, saved, chunks = warm_session(100)
    defaults = {name: getattr(fused, name) for name in KNOBS}
    best: dict[str, object] = {}
    with torch.no_grad():
        if args.against:
            arms = {"18th": use({**defaults, **EIGHTEENTH}), "defaults": use(defaults)}
            alternate_fed(session, saved, chunks[: args.steps], arms, args.replays)
            use(defaults)()
            return
        for name, values in knobs.items():
            times = {}
            for value in [defaults[name], *(v for v in values if v != defaults[name])]:
                setattr(fused, name, value)
                recapture(session, saved)
                times[value] = replay_us(session, saved, args.replays)
            setattr(fused, name, defaults[name])
            ref = times[defaults[name]]
            row = "  ".join(f"{v}: {t - ref:+6.1f}" for v, t in times.items())
            print(f"{name} (default {defaults[name]}: {ref:.1f} us) | {row}", flush=True)
            pick = min(times, key=times.__getitem__)
            if times[pick] < ref - 2.0:
                best[name] = pick
        print(f"chosen: {best}", flush=True)
        arms = {"defaults": use(defaults), "chosen": use({**defaults, **best})}
        alternate_fed(session, saved, chunks[: args.steps], arms, args.replays)
        use(defaults)()


if __name__ == "__main__":
    main()
