"""How many rows should a folder's segments share? (device machine; picks cli.FOLDER_BATCH)

    python bench/folder_rows.py [--files N] [--seconds S] [--segment S] [--rows R ...] [--dense R ...]

Runs `transcribe_segmented_files` (what `voxtral-desktop transcribe` does with several files) over
N random-noise files of S seconds, in segments of at most --segment seconds, for each row count:
on the Q4 model with the `auto` kernel (--rows), and with the decoder's dense bf16 copies of the
weights (--dense: `BatchDecoder(dense=True)`). Prints the real-time factor and the peak GPU memory
of each run beyond the model itself (the dense copy included).
"""

from __future__ import annotations

import argparse
import gc
import time

import torch

from voxtral_desktop.benchmark import noise, random_q4_tensors
from voxtral_desktop.config import SAMPLE_RATE, ModelConfig, StreamConfig
from voxtral_desktop.engine.batch import BatchDecoder
from voxtral_desktop.engine.long_file import transcribe_segmented_files
from voxtral_desktop.engine.tokenizer import TekkenTokenizer
from voxtral_desktop.kernels.select import choose_kv_int8, choose_q4_backend
from voxtral_desktop.model.build import build_model
from voxtral_desktop.synthetic.tekken import build_tekken_json

parser = argparse.ArgumentParser()
parser.add_argument("--files", type=int, default=64)
parser.add_argument("--seconds", type=float, default=60.0)
parser.add_argument("--segment", type=float, default=30.0)
parser.add_argument("--rows", type=int, nargs="*", default=[8, 16, 32, 64, 128])
parser.add_argument("--dense", type=int, nargs="*", default=[64, 128])
args = parser.parse_args()

dev = torch.device("cuda")
config = ModelConfig()
tensors = random_q4_tensors(config)
tokenizer = TekkenTokenizer.from_dict(build_tekken_json(2000, must_include=()))
folder = [noise(args.seconds, seed=10 + i) for i in range(args.files)]
audio_s = args.files * args.seconds


def run(model, rows: int, dense: bool) -> None:
    label = "dense" if dense else "q4   "
    gc.collect()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    try:
        t_build = time.perf_counter()
        decoder = BatchDecoder(
            model, tokenizer, StreamConfig(480), batch=rows, max_seconds=args.segment, cuda_graphs=True,
            dense=dense,
        )  # fmt: skip
        torch.cuda.synchronize()
        t_build = time.perf_counter() - t_build
        warm = [[a[: 2 * SAMPLE_RATE]] for a in folder[:rows]]
        list(transcribe_segmented_files(decoder, warm, max_seconds=args.segment))
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        done = list(
            transcribe_segmented_files(
                decoder, [[a] for a in folder], max_seconds=args.segment, balance_tail=True
            )
        )
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - t0
    except torch.OutOfMemoryError:
        print(f"{label} rows {rows:4d}: out of memory")
        return
    assert len(done) == args.files
    peak = (torch.cuda.max_memory_allocated(dev) - base) / 1024**3
    print(
        f"{label} rows {rows:4d}: {audio_s / elapsed:8.1f}x real time ({elapsed:.2f} s for "
        f"{args.files} x {args.seconds:g} s), peak {peak:.2f} GiB beyond the model, built in {t_build:.2f} s",
        flush=True,
    )
    del decoder, done


backend = choose_q4_backend(dev, "auto")
model = build_model(config, tensors, device=dev, dtype=torch.bfloat16, q4_backend=backend, fuse=True)
model.kv_int8 = choose_kv_int8(dev, torch.bfloat16, "auto")
print(f"Q4 kernel: {backend.name if backend else 'dense'}; KV int8: {model.kv_int8}", flush=True)
for rows in args.rows:
    run(model, rows, False)
for rows in args.dense:
    run(model, rows, True)
