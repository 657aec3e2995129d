"""Where the time of a folder through `transcribe` goes (device machine).

    python bench/profile_folder.py [--files N] [--seconds S] [--segment S] [--rows R]

Runs `transcribe_segmented_files` as the command does with several files (dense copies where
`choose_dense` says so) on N random-noise files of S seconds, and prints, per decoder call, the
rows used, the longest piece, and the encoder and decoder phases' wall time (synchronised);
then the time outside the calls (cutting, pairing, merging) and a cProfile of the host.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import torch

from voxtral_desktop.benchmark import noise, random_q4_tensors
from voxtral_desktop.config import SAMPLE_RATE, ModelConfig, StreamConfig
from voxtral_desktop.engine.batch import BatchDecoder
from voxtral_desktop.engine.long_file import transcribe_segmented_files
from voxtral_desktop.engine.tokenizer import TekkenTokenizer
from voxtral_desktop.kernels.select import choose_kv_int8, choose_q4_backend
from voxtral_desktop.model.build import build_model
from voxtral_desktop.synthetic.model import tiny_config
from voxtral_desktop.synthetic.tekken import build_tekken_json

parser = argparse.ArgumentParser()
parser.add_argument("--files", type=int, default=256)
parser.add_argument("--seconds", type=float, default=60.0)
parser.add_argument("--segment", type=float, default=30.0)
parser.add_argument("--rows", type=int, default=256)
parser.add_argument("--tiny", action="store_true", help="a tiny random model on the CPU (a dry run)")
args = parser.parse_args()

dev = torch.device("cpu" if args.tiny else "cuda")
config = tiny_config() if args.tiny else ModelConfig()


def sync() -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


dtype = torch.float32 if args.tiny else torch.bfloat16
model = build_model(
    config,
    random_q4_tensors(config),
    device=dev,
    dtype=torch.bfloat16,
    q4_backend=choose_q4_backend(dev),
    fuse=True,
)
model.kv_int8 = choose_kv_int8(dev, torch.bfloat16)
tokenizer = TekkenTokenizer.from_dict(
    build_tekken_json(min(2000, config.decoder.vocab_size - 1000), must_include=())
)
decoder = BatchDecoder(
    model,
    tokenizer,
    StreamConfig(480),
    batch=args.rows,
    max_seconds=args.segment,
    cuda_graphs=dev.type == "cuda",
    dense=None,
)
print(f"{args.rows} rows: {decoder.dense_reason}", flush=True)
folder = [noise(args.seconds, seed=10 + i) for i in range(args.files)]
list(
    transcribe_segmented_files(
        decoder, [[a[: 2 * SAMPLE_RATE]] for a in folder[: args.rows]], max_seconds=args.segment
    )
)

calls: list[dict] = []
encode, transcribe = decoder._encode, decoder.transcribe


def timed_encode(mels, n_positions):
    sync()
    t0 = time.perf_counter()
    out = encode(mels, n_positions)
    sync()
    calls[-1]["encode_s"] = time.perf_counter() - t0
    return out


def timed_transcribe(audios, starts=None):
    sync()
    calls.append({"rows": len(audios), "longest_s": max(len(a) for a in audios) / SAMPLE_RATE})
    t0 = time.perf_counter()
    out = transcribe(audios, starts)
    sync()
    calls[-1]["total_s"] = time.perf_counter() - t0
    return out


decoder._encode, decoder.transcribe = timed_encode, timed_transcribe
profiler = cProfile.Profile()
sync()
t0 = time.perf_counter()
profiler.enable()
done = list(
    transcribe_segmented_files(decoder, [[a] for a in folder], max_seconds=args.segment, balance_tail=True)
)
profiler.disable()
sync()
wall = time.perf_counter() - t0
assert len(done) == args.files
inside = sum(c["total_s"] for c in calls)
print(
    f"{args.files} x {args.seconds:g} s: {wall:.2f} s wall, {args.files * args.seconds / wall:.1f}x real time"
)
for c in calls:
    print(
        f"  call: {c['rows']:4d} rows, longest {c['longest_s']:5.1f} s, encoder {c['encode_s']:.2f} s, "
        f"rest (prompt, decoder steps, tokens) {c['total_s'] - c['encode_s']:.2f} s"
    )
print(f"inside the decoder calls {inside:.2f} s, outside (cutting, pairing, merging) {wall - inside:.2f} s")
pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
