"""How many files one folder batch should decode side by side (device).

    python bench/folder_batch_size.py [--sizes 256 512] [--rounds 2] [--seconds 60] [--transcribe]

At 256 rows the decoder's dense matmuls are short of the tensor cores' rate: the output
(3072 x 4096) and down (3072 x 9216) products make too few 256-row tiles to fill the GPU. More
rows share each weight read and fill it, while attention, the encoder and the small kernels grow
with the rows. 1. Each decoder matrix at 256-768 rows (CUDA graphs of 26 calls over 26 weights,
best of 3): us a call and TFLOP/s. 2. The bench's folder batch (dense bf16 model, int8 decoder
caches, `BatchDecoder` over whole files) at each size in `--sizes`, alternating, with its peak
GPU memory, its encoder phase's share of each call, and whether the first files' tokens match
the first batch's. 3. `--transcribe`: the same folder through `transcribe`'s path (Q4 model,
30 s segments sharing `--sizes` rows, dense copies where they fit), as the bench's last folder row.
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import sys
import time

import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.dirname(__file__))
from full_model import full_size_model, timed_batch_calls
from tune_q4 import graph_time_us

from voxtral_desktop.config import SAMPLE_RATE, StreamConfig
from voxtral_desktop.engine.batch import BatchDecoder

parser = argparse.ArgumentParser()
parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
parser.add_argument("--rounds", type=int, default=2)
parser.add_argument("--seconds", type=float, default=60.0)
parser.add_argument("--repeat", type=int, default=2, help="times through the sizes, alternating")
parser.add_argument("--transcribe", action="store_true")
parser.add_argument("--no-matrices", action="store_true")
parser.add_argument("--files", type=int, default=256, help="the folder of --transcribe")
args = parser.parse_args()
dev = torch.device("cuda")
print = functools.partial(print, flush=True)  # the log is read as it runs
SHAPES = {"wqkv": (6144, 3072), "wo": (3072, 4096), "w13": (18432, 3072), "w2": (3072, 9216)}


def matrices() -> None:
    for name, (n, k) in SHAPES.items():
        ws = [torch.randn(n, k, device=dev, dtype=torch.bfloat16) * 0.02 for _ in range(26)]
        cells = []
        for rows in (256, 384, 512, 768):
            x = torch.randn(rows, k, device=dev, dtype=torch.bfloat16)
            layer = lambda x=x, ws=ws: [F.linear(x, w) for w in ws]  # noqa: E731
            us = graph_time_us(layer, calls=1, reps=3, pick=min) / 26
            cells.append(f"{rows} rows {us:.1f} us ({2 * rows * n * k / us / 1e6:.0f} TFLOP/s)")
        print(f"{name} ({n} x {k}): " + "; ".join(cells))
        ws.clear()


def folder() -> None:
    from voxtral_desktop.benchmark import noise

    model, tok = full_size_model(dense=True)
    model.kv_int8 = True
    audios = [noise(args.seconds, seed=10 + i) for i in range(max(args.sizes))]
    first: list[list[int]] | None = None
    for _ in range(args.repeat):
        for files in args.sizes:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            encoder: list[float] = []
            walls, ids = timed_batch_calls(
                model, tok, audios[:files], args.rounds, on_decoder=lambda d, e=encoder: time_encoder(d, e)
            )
            peak = torch.cuda.max_memory_allocated() / 1024**3
            first = first or ids
            same = sum(a == b for a, b in zip(first, ids, strict=False))
            rates = ", ".join(
                f"{w:.2f} s ({files * args.seconds / w:.1f}x; encoder {e:.2f} s)"
                for w, e in zip(walls, encoder, strict=True)
            )
            print(f"folder {files} x {args.seconds:.0f} s: {rates}; peak GPU {peak:.1f} GiB; "
                  f"the first {len(first)} files' tokens equal the first batch's in {same}")  # fmt: skip
    del model
    gc.collect()
    torch.cuda.empty_cache()


def time_encoder(decoder: BatchDecoder, seconds: list[float]) -> None:
    """Each later call's encoder phase (synchronised wall time) appended to `seconds`."""
    encode = decoder._encode

    def timed(*a: object) -> torch.Tensor:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = encode(*a)  # type: ignore[arg-type]
        torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t0)
        return out

    decoder._encode = timed  # type: ignore[method-assign]


def through_transcribe() -> None:
    from voxtral_desktop.benchmark import noise
    from voxtral_desktop.engine.long_file import transcribe_segmented_files

    model, tok = full_size_model()
    audios = [[noise(args.seconds, seed=10 + i)] for i in range(args.files)]
    for _ in range(args.repeat):
        for rows in args.sizes:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            decoder = BatchDecoder(
                model, tok, StreamConfig(480), batch=rows, max_seconds=30.0, cuda_graphs=True, dense=None
            )
            list(
                transcribe_segmented_files(
                    decoder, [[a[0][: 2 * SAMPLE_RATE]] for a in audios[:rows]], max_seconds=30.0
                )
            )
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            done = list(transcribe_segmented_files(decoder, audios, max_seconds=30.0, balance_tail=True))
            torch.cuda.synchronize()
            wall = time.perf_counter() - t0
            assert len(done) == args.files
            peak = torch.cuda.max_memory_allocated() / 1024**3
            print(f"the folder through transcribe, {args.files} x {args.seconds:.0f} s, {rows} rows "
                  f"({decoder.dense_reason}): {wall:.2f} s ({args.files * args.seconds / wall:.1f}x); "
                  f"peak GPU {peak:.1f} GiB")  # fmt: skip
            del decoder, done
            gc.collect()


if __name__ == "__main__":
    print(torch.__version__, torch.cuda.get_device_name())
    if not args.no_matrices:
        matrices()
    folder()
    if args.transcribe:
        through_transcribe()
