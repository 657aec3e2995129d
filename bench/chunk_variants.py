"""Which compiled variants of the chunk attention kernel the bench's file paths need (any machine).

    python bench/chunk_variants.py

Triton compiles a kernel once per combination of its integer arguments' "divisible by 16" (and
"equal to 1") properties. The fused chunk attention (`kernels/fused.attention`, more than
`ATTN_SPLIT_ROWS` query rows) takes the slots in use S and the chunk's frames T (its rows, in
the encoder). This runs the bench's file workloads on a tiny model with the full-size 750-frame
encoder window, on the CPU (the same cache and chunking code, no kernel), and records those
properties for every encoder chunk: a 300 s file as one live session in 30 s pieces, then a
warm-up of the segment decoder (<= 30 s x 8 rows; 3 s as the bench had it until the eleventh
session, one whole segment since), then the timed 300 s in segments. It prints the variants
the timed run needs that the warm-up alone did not compile, and those that neither the warm-up
nor the session before it did.
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from test_parity import VOCAB

from voxtral_desktop.benchmark import noise
from voxtral_desktop.config import SAMPLE_RATE, StreamConfig
from voxtral_desktop.engine.batch import BatchDecoder
from voxtral_desktop.engine.long_file import transcribe_segmented
from voxtral_desktop.engine.session import StreamingSession
from voxtral_desktop.engine.tokenizer import TekkenTokenizer
from voxtral_desktop.engine.transcribe import transcribe_stream
from voxtral_desktop.kernels.fused import ATTN_SPLIT_ROWS
from voxtral_desktop.model.build import build_model
from voxtral_desktop.model.cache import KVCache
from voxtral_desktop.synthetic.model import random_tensors, tiny_config
from voxtral_desktop.synthetic.tekken import build_tekken_json

config = tiny_config(decoder_vocab_size=VOCAB, encoder_sliding_window=750)
tensors = random_tensors(config, seed=1, dtype=torch.float32)
model = build_model(config, tensors, device=torch.device("cpu"), dtype=torch.float32, fuse=True)
tok = TekkenTokenizer.from_dict(build_tekken_json(VOCAB))
seen: set[tuple[str, str]] = set()
used = KVCache.used


def recording(self: KVCache, layer: int):  # type: ignore[no-untyped-def]
    kv = used(self, layer)
    S, T = kv.k.shape[2], len(self.slots)
    if self.window == config.encoder.sliding_window and layer == 0 and T > ATTN_SPLIT_ROWS:
        seen.add((f"S={'16k' if S % 16 == 0 else 'other'}", f"T={'16k' if T % 16 == 0 else 'other'}"))
    return kv


KVCache.used = recording  # type: ignore[method-assign]
audio = noise(300.0, seed=2)
pieces = [audio[i : i + 30 * SAMPLE_RATE] for i in range(0, len(audio), 30 * SAMPLE_RATE)]
transcribe_stream(StreamingSession(model, tok, StreamConfig(480)), pieces)
session = set(seen)
print(f"one live session, 300 s in 30 s pieces: {sorted(session)}")
for warm_up_seconds in (3, 30):  # the bench's warm-up until the eleventh session, and since
    seen.clear()
    segments = BatchDecoder(model, tok, StreamConfig(480), batch=8, max_seconds=30.0)
    transcribe_segmented(segments, [audio[: warm_up_seconds * SAMPLE_RATE]], max_seconds=30.0)
    warm_up = set(seen)
    seen.clear()
    transcribe_segmented(segments, pieces, max_seconds=30.0, balance_tail=True)
    print(f"segment decoder, {warm_up_seconds} s warm-up: {sorted(warm_up)}")
    print(f"  300 s timed: {sorted(seen)}")
    print(f"  needed by the timed run, not by the warm-up: {sorted(seen - warm_up)}")
    neither = seen - warm_up - session
    print(f"  needed by the timed run, neither by the warm-up nor the session: {sorted(neither)}")
