"""How `transcribe` lays a folder's segments into decoder calls (CPU; no model).

    python bench/folder_rounds.py [--files 256] [--seconds 60] [--rows 256] [--segment-seconds 30]

`voxtral-desktop bench` times the same folder twice: one `BatchDecoder` call over whole files
(1,867.9x on the H200 in the twelfth session) and through `transcribe`'s path, segments of
<= 30 s sharing 256 rows (1,516.0x). This replays the second one's planning exactly
(`transcribe_segmented_files` with the bench's noise files and `balance_tail`), with a decoder
that only records what it is asked to decode, and counts per call: the segments, the decoder
steps of the longest (what a lockstep call runs; the silent prefix, run once a call, left out)
and the steps its rows use. Every row of a call runs as many steps as the call's longest, so
rows x longest against the sum of the used steps is the share of decoder work spent on rows
that have something to decode, and the sum of the calls' longest is the decoder steps in all.
"""

from __future__ import annotations

import argparse

import numpy as np

from voxtral_desktop.benchmark import noise
from voxtral_desktop.config import SAMPLE_RATE, SAMPLES_PER_TOKEN, StreamConfig
from voxtral_desktop.engine.batch import SILENT_POSITIONS, padded_audio
from voxtral_desktop.engine.long_file import transcribe_segmented_files
from voxtral_desktop.engine.transcribe import Transcript


def positions(n_samples: int, config: StreamConfig) -> int:
    return len(padded_audio(np.zeros(n_samples, np.float32), config)) // SAMPLES_PER_TOKEN


def decoder_steps(n_samples: int, config: StreamConfig) -> int:
    """Positions a call's decoder runs for a row: all but the last (the reference never runs it)
    and the silent prefix, which a `BatchDecoder` runs once and copies into every row."""
    return positions(n_samples, config) - 1 - SILENT_POSITIONS


class Recorder:
    """Stands in for `BatchDecoder`: records each call's segment lengths, decodes nothing."""

    def __init__(self, rows: int, max_seconds: float) -> None:
        self.batch, self.config = rows, StreamConfig(480)
        self.max_positions = positions(int(max_seconds * SAMPLE_RATE), self.config)
        self.calls: list[list[int]] = []

    def transcribe(self, audios: list[np.ndarray], starts: list[int]) -> list[Transcript]:
        self.calls.append([len(a) for a in audios])
        return [Transcript("", (), self.config.delay_ms, len(a) / SAMPLE_RATE) for a in audios]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--segment-seconds", type=float, default=30.0)
    args = parser.parse_args()
    folder = [noise(args.seconds, seed=10 + i) for i in range(args.files)]
    recorder = Recorder(args.rows, args.segment_seconds)
    done = list(
        transcribe_segmented_files(
            recorder,  # type: ignore[arg-type]
            [[a] for a in folder],
            max_seconds=args.segment_seconds,
            balance_tail=True,
        )
    )
    assert len(done) == args.files
    config = recorder.config
    steps = used = 0
    print(f"{args.files} x {args.seconds:g} s, segments <= {args.segment_seconds:g} s, {args.rows} rows")
    for i, lengths in enumerate(recorder.calls):
        p = [decoder_steps(n, config) for n in lengths]
        steps += max(p)
        used += sum(p)
        print(f"  call {i}: {len(p):3d} segments of {min(lengths) / SAMPLE_RATE:5.1f}-"
              f"{max(lengths) / SAMPLE_RATE:5.1f} s; {max(p)} decoder steps; rows busy "
              f"{sum(p) / (args.rows * max(p)):.1%} of rows x steps")  # fmt: skip
    whole = decoder_steps(int(args.seconds * SAMPLE_RATE), config)
    print(f"segments: {len(recorder.calls)} calls, {steps} decoder steps in lockstep, rows busy "
          f"{used / (args.rows * steps):.1%}")  # fmt: skip
    print(f"whole files in one call: {whole} decoder steps, rows busy {args.files / args.rows:.1%}")


if __name__ == "__main__":
    main()
