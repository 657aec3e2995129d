"""Tokens of the tiny mma model, eager and in CUDA graphs, with programmatic dependent launch
for none, some or all of the kernels (device; kernels/pdl.py). A race shows as a run that
differs from the eager run without PDL, and from itself when repeated.

    python bench/check_pdl.py
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from test_parity import VOCAB, speechlike

from voxtral_desktop.config import StreamConfig
from voxtral_desktop.engine.session import StreamingSession
from voxtral_desktop.engine.tokenizer import TekkenTokenizer
from voxtral_desktop.engine.transcribe import transcribe_stream
from voxtral_desktop.kernels import fused, pdl
from voxtral_desktop.kernels.mma_q4 import CudaMmaQ4Backend
from voxtral_desktop.kernels.q4 import Q4Weight, quantize_q4_0
from voxtral_desktop.model.build import build_model
from voxtral_desktop.synthetic.model import random_tensors, tiny_config
from voxtral_desktop.synthetic.tekken import build_tekken_json
from voxtral_desktop.weights.names import expected_tensors

dev = torch.device("cuda")
config = tiny_config(decoder_vocab_size=VOCAB)
t = random_tensors(config, seed=7, dtype=torch.float32)
tensors = {s.name: Q4Weight(quantize_q4_0(t[s.name]), s.shape) if s.quantizable else t[s.name]
           for s in expected_tensors(config)}  # fmt: skip
model = build_model(
    config, tensors, device=dev, dtype=torch.bfloat16, q4_backend=CudaMmaQ4Backend(), fuse=True
)
tok = TekkenTokenizer.from_dict(build_tekken_json(2000))
audio = speechlike(4.0, 7)
enabled, options = pdl.enabled, pdl.triton_options
SETTINGS = {
    "none": (lambda d: False, lambda d: {"PDL": False}),
    "all": (enabled, options),
    "mma only": (enabled, lambda d: {"PDL": False}),
    "triton only": (lambda d: False, lambda d: {"PDL": True, "launch_pdl": True}),
    "triton waits, no attribute": (lambda d: False, lambda d: {"PDL": True}),
}


def run(graphs: bool) -> list[int]:
    session = StreamingSession(model, tok, StreamConfig(480), cuda_graphs=graphs)
    return [x.id for x in transcribe_stream(session, [audio]).tokens]


def first_difference(a: list[int], b: list[int]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"differs at {i}"
    return "same" if len(a) == len(b) else f"lengths {len(a)} / {len(b)}"


pdl.enabled, pdl.triton_options = SETTINGS["none"]
base = run(False)
print(f"eager, no PDL: {len(base)} tokens; again: {first_difference(base, run(False))}")
print(f"graphs, no PDL: {first_difference(base, run(True))}")
for name, (e, o) in SETTINGS.items():
    pdl.enabled, pdl.triton_options = e, o
    for graphs in (False, True):
        runs = [run(graphs) for _ in range(3)]
        label = "graphs" if graphs else "eager"
        print(f"{name}, {label}: " + ", ".join(first_difference(base, r) for r in runs), flush=True)
pdl.enabled, pdl.triton_options = enabled, options

# Where the wait lands in a Triton kernel's code: before the first global load?
x = torch.randn(4, 1280, device=dev, dtype=torch.bfloat16)
fused.rms_norm(x, torch.ones(1280, device=dev), 1e-5)
kernel = fused._kernels()[0]
try:  # Triton 3.x keeps compiled kernels per device: (kernel cache, ...)
    for compiled in kernel.device_caches[0][0].values():
        ptx = compiled.asm.get("ptx", "")
        if "griddepcontrol" in ptx:
            lines = [ln.strip() for ln in ptx.splitlines() if "griddepcontrol" in ln or "ld.global" in ln]
            print("rms_norm PTX order:", lines[:6])
except Exception as e:  # only a diagnostic
    print(f"no PTX: {type(e).__name__}: {e}")
