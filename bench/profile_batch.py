"""Where the time of a folder batch goes (device machine): encoder phase, decoder phase, kernels.

    python bench/profile_batch.py [--runs B:SECONDS:ENC_BATCH:ENC_CHUNK ...] [--weights dense|int4]
                                  [--kv-cache int8|full] [--profile]

For each run, times `BatchDecoder.transcribe` on B random-noise files of SECONDS each with a
full-size random model (dense bf16 weights by default, as the bench's folder batch), split into
its encoder phase (ENC_BATCH streams at a time, chunks of ENC_CHUNK positions) and its decoder
phase; `--profile` then prints a profile by kernel of the last run.
"""

from __future__ import annotations

import argparse
import gc
import time

import torch
from torch.profiler import ProfilerActivity, profile

from voxtral_desktop.benchmark import noise, random_q4_tensors
from voxtral_desktop.config import ModelConfig, StreamConfig
from voxtral_desktop.engine.batch import BatchDecoder
from voxtral_desktop.engine.tokenizer import TekkenTokenizer
from voxtral_desktop.kernels.int4pack import CudaInt4Backend
from voxtral_desktop.model.build import build_model
from voxtral_desktop.synthetic.tekken import build_tekken_json

parser = argparse.ArgumentParser()
parser.add_argument("--runs", nargs="+", default=["64:60:8:64"], metavar="B:SECONDS:ENC_BATCH:ENC_CHUNK")
parser.add_argument("--weights", choices=["dense", "int4"], default="dense")
parser.add_argument("--kv-cache", choices=["int8", "full"], default="int8")
parser.add_argument("--profile", action="store_true")
args = parser.parse_args()

dev = torch.device("cuda")
config = ModelConfig()
backend = CudaInt4Backend() if args.weights == "int4" else None
model = build_model(
    config, random_q4_tensors(config), device=dev, dtype=torch.bfloat16, q4_backend=backend, fuse=True
)
model.kv_int8 = args.kv_cache == "int8"
tok = TekkenTokenizer.from_dict(build_tekken_json(2000))

for spec in args.runs:
    batch, seconds, enc_batch, enc_chunk = (float(v) for v in spec.split(":"))
    batch, enc_batch, enc_chunk = int(batch), int(enc_batch), int(enc_chunk)
    torch.cuda.reset_peak_memory_stats()
    try:
        decoder = BatchDecoder(
            model, tok, StreamConfig(480), batch=batch, max_seconds=seconds, cuda_graphs=True,
            encoder_batch=enc_batch, encoder_chunk=enc_chunk,
        )  # fmt: skip
    except torch.OutOfMemoryError:
        print(f"{spec}: out of GPU memory")
        continue
    audios = [noise(seconds, seed=i) for i in range(batch)]
    decoder.transcribe([a[:32000] for a in audios])  # warm-up

    encode = decoder._encode
    phase = {"encode": 0.0}

    def timed_encode(*a, _encode=encode, phase=phase, **kw):  # type: ignore[no-untyped-def]
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = _encode(*a, **kw)
        torch.cuda.synchronize()
        phase["encode"] += time.perf_counter() - t0
        return out

    decoder._encode = timed_encode  # type: ignore[method-assign]
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    decoder.transcribe(audios)
    torch.cuda.synchronize()
    total = time.perf_counter() - t0
    audio_s = batch * seconds
    print(
        f"batch {batch} x {seconds:.0f} s ({args.weights}, kv {args.kv_cache}, encoder {enc_batch} streams x "
        f"{enc_chunk} positions): {total:.2f} s = {audio_s / total:.0f}x real time; encoder phase "
        f"{phase['encode']:.2f} s ({audio_s / phase['encode']:.0f}x), decoder phase "
        f"{total - phase['encode']:.2f} s; peak GPU {torch.cuda.max_memory_allocated() / 1024**3:.1f} GiB",
        flush=True,
    )
    if args.profile and spec == args.runs[-1]:
        decoder._encode = encode  # type: ignore[method-assign]
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            decoder._encode(
                [torch.zeros(128, int(seconds * 100) + 400, device=dev, dtype=torch.bfloat16)] * batch,
                int(seconds * 12.5),
            )
            torch.cuda.synchronize()
        print("encoder phase alone:")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=20, max_name_column_width=60))
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            decoder.transcribe(audios)
            torch.cuda.synchronize()
        print("whole batch:")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=60))
        print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=12, max_name_column_width=60))
    del decoder
    gc.collect()
    torch.cuda.empty_cache()
