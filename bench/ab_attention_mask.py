"""Visibility by per-key bounds against the distance rule, in every attention kernel (device).

    python bench/ab_attention_mask.py [--folder] [--rounds 2]

A query at position p sees slot s (holding position held[s], < 0 when empty) iff
0 <= p - held[s] < WINDOW. Up to the eleventh session the kernels evaluated that per score as a
subtraction, three compares and four ands (the rows' mask included). With D = 64 (the encoder)
a score costs the tensor cores 256 flops and the CUDA cores about fifteen instructions, so the
encoder chunk's flash attention may be bound by the latter. `fused.BOUND_MASK` computes
`until = held + WINDOW` once per key (-1 when empty) and asks `held <= p < until`: two compares
and an and per score; rows past R go unmasked (their output is never stored). The twelfth
session's run (h200_session12/ab_attention_mask.log) switched both `attn_split_kernel` and
`attn_keys_kernel`; the bounds slowed the latter by 17-19 %, so since then they apply to
`attn_split_kernel` only (the chunk and the live step's split), and so does this switch.

1. The kernels at the folder's shapes, both ways (CUDA graphs of 50 calls, best of 3): the
   encoder chunk (64 streams x 128 frames, 32 heads of 64, 877-slot ring, window 750; int8 and
   bf16), the 256-stream decoder step (int8, 400 / 780 of 800 slots), and a live step's split
   attention (one stream: the decoder's 4 rows over 800 keys, the encoder's 4 frames over 750).
   Prints each output's largest difference between the two (they should be equal).
2. `--folder`: the bench's folder batch (256 x 60 s, dense bf16 model, int8 decoder caches,
   graphs), the two ways alternating: wall time a call and whether tokens agree in every file.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from attention_cases import chunk_case
from full_model import add_folder_arguments
from tune_q4 import graph_time_us

from voxtral_desktop.kernels import fused
from voxtral_desktop.kernels.kv_int8 import LayerKV, quantize_kv

parser = argparse.ArgumentParser()
add_folder_arguments(parser)
args = parser.parse_args()
dev = torch.device("cuda")
print = functools.partial(print, flush=True)  # the log is read as it runs
WAYS = {"distance": False, "bounds": True}


def timed_us(fn) -> float:  # type: ignore[no-untyped-def]
    """Best of 3 replays of a CUDA graph of 50 calls."""
    return graph_time_us(fn, calls=50, reps=3, pick=min)


def ring(B: int, Hkv: int, S: int, D: int, int8: bool) -> LayerKV:
    (k8, ks), (v8, vs) = (quantize_kv(torch.randn(B, Hkv, S, D, device=dev)) for _ in range(2))
    kv = LayerKV(k8, v8, ks, vs)
    return kv if int8 else LayerKV(*kv.dense(torch.bfloat16))


def compare(name: str, call) -> None:  # type: ignore[no-untyped-def]
    outs, times = {}, {}
    for _ in range(2):  # each way twice, alternating: drift shows
        for way, on in WAYS.items():
            fused.BOUND_MASK = on
            outs[way] = call()
            times.setdefault(way, []).append(timed_us(call))
    fused.BOUND_MASK = True
    diff = (outs["bounds"].float() - outs["distance"].float()).abs().max().item()
    shown = ", ".join(f"{w} {' / '.join(f'{t:.1f}' for t in ts)} us" for w, ts in times.items())
    print(f"{name:60s} {shown}; largest difference {diff:.1e}")


def kernels() -> None:
    # encoder chunk of the folder's encoder phase
    for int8 in (True, False):
        compare(f"encoder chunk 64 x 128 frames, {'int8' if int8 else 'bf16'} ring",
                chunk_case(64, 32, 32, 128, 64, 750, int8))  # fmt: skip
    # the 256-stream decoder step
    B, H, Hkv, D, S = 256, 32, 8, 128, 800
    q = torch.randn(B, H, 1, D, device=dev, dtype=torch.bfloat16)
    kv = ring(B, Hkv, S, D, True)
    for filled in (400, 780):
        held = torch.full((S,), -1, dtype=torch.long, device=dev)
        held[:filled] = torch.arange(filled, device=dev)
        at = (torch.tensor([filled - 1], device=dev), held, 8192, torch.tensor(filled, device=dev))
        compare(f"decoder step 256 streams, int8, {filled} of {S} slots",
                lambda at=at: fused.attention(q, kv, *at))  # fmt: skip
    # a live step (one stream): split among programs, then combined
    for name, H, Hkv, T, D, S in (("decoder, 4 rows over 800 keys", 32, 8, 1, 128, 800),
                                  ("encoder, 4 frames over 750 keys", 32, 32, 4, 64, 753)):  # fmt: skip
        q = torch.randn(1, H, T, D, device=dev, dtype=torch.bfloat16)
        kv = ring(1, Hkv, S, D, True)
        held = torch.arange(S, device=dev) + 5000
        at = (torch.arange(5000 + S - T, 5000 + S, device=dev), held, 750 if Hkv == H else 8192)
        compare(f"live step, {name}", lambda q=q, kv=kv, at=at: fused.attention(q, kv, *at))


def folder() -> None:
    from full_model import folder_arms

    def use(on: bool):  # type: ignore[no-untyped-def]
        return lambda: setattr(fused, "BOUND_MASK", on)

    arms = [(f"visibility by {way}", use(on)) for way, on in WAYS.items()]
    folder_arms(arms + arms, args.files, args.seconds, args.rounds)
    fused.BOUND_MASK = True


if __name__ == "__main__":
    print(torch.__version__, torch.cuda.get_device_name())
    kernels()
    if args.folder:
        folder()
