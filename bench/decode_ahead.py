"""Reading a folder of compressed files: in turn (`iter_audio`) or decoded ahead by worker
processes (`audio/prefetch.py`). Runs on any machine (no model).

    python bench/decode_ahead.py [--files 16] [--seconds 60] [--codec mp3] [--busy-ms 0]

Writes FILES noise files of SECONDS (44.1 kHz stereo) with PyAV's encoder, then times reading
all of them, chunk by chunk, in turn and with 1, 2, ... workers. `--busy-ms` makes the reader
wait that long per 30 s of audio it takes in (a sleep, which releases the GIL, standing in for
the GPU work the transcriber waits on), which is the overlap a folder run gets.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from voxtral_desktop.audio.decode import iter_audio
from voxtral_desktop.audio.prefetch import decoded_ahead, default_workers


def write(path: Path, seconds: float, codec: str, seed: int) -> Path:
    rate = 44100
    x = (0.1 * np.random.default_rng(seed).standard_normal((2, int(rate * seconds)))).astype(np.float32)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "stereo"
        for start in range(0, x.shape[1], 1152):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(x[:, start : start + 1152]), format="fltp", layout="stereo"
            )
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def consume(sources, busy_s_per_30s: float) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    for chunks in sources:
        for chunk in chunks:
            time.sleep(busy_s_per_30s * len(chunk) / (30 * 16000))
    return time.perf_counter() - t0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--codec", default="mp3")
    parser.add_argument("--busy-ms", type=float, default=0.0)
    args = parser.parse_args()
    suffix = {"mp3": "mp3", "aac": "m4a", "libopus": "ogg", "flac": "flac"}.get(args.codec, "mka")
    with tempfile.TemporaryDirectory() as tmp:
        paths = [write(Path(tmp) / f"{i}.{suffix}", args.seconds, args.codec, i) for i in range(args.files)]
        audio_s = args.files * args.seconds
        busy = args.busy_ms / 1e3
        print(f"{args.files} files x {args.seconds:g} s of {args.codec}; {os.cpu_count()} cores; "
              f"default workers {default_workers()}; busy {args.busy_ms:g} ms per 30 s")  # fmt: skip
        wall = consume((iter_audio(p) for p in paths), busy)
        print(f"  in turn:     {wall:.3f} s ({audio_s / wall:.0f}x real time)")
        for workers in range(1, max(2, default_workers()) + 1):
            sources = decoded_ahead(paths, workers=workers)
            wall = consume(sources, busy)
            print(f"  {workers} worker(s): {wall:.3f} s ({audio_s / wall:.0f}x real time)")
