"""The full-size model with random Q4_0 weights that the device-only bench scripts share.

Built the way `voxtral-desktop bench` builds its own (`benchmark.random_q4_tensors`, nothing
downloaded), with a tekken tokenizer of 2,000 synthetic tokens for the session's detokenizer.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from voxtral_desktop.benchmark import random_q4_tensors
from voxtral_desktop.config import ModelConfig, StreamConfig
from voxtral_desktop.engine.session import StreamingSession
from voxtral_desktop.engine.tokenizer import TekkenTokenizer
from voxtral_desktop.kernels.mma_q4 import CudaMmaQ4Backend
from voxtral_desktop.model.build import build_model
from voxtral_desktop.model.voxtral import VoxtralModel
from voxtral_desktop.synthetic.tekken import build_tekken_json


def full_size_model(*, dense: bool = False) -> tuple[VoxtralModel, TekkenTokenizer]:
    """(model, tokenizer) on CUDA in bf16: the mma Q4 kernel, or dense bf16 weights (`dense`, as
    the bench's folder batch runs); fused projections either way."""
    config = ModelConfig()
    backend = None if dense else CudaMmaQ4Backend()
    model = build_model(
        config,
        random_q4_tensors(config),
        device=torch.device("cuda"),
        dtype=torch.bfloat16,
        q4_backend=backend,
        fuse=True,
    )
    return model, TekkenTokenizer.from_dict(build_tekken_json(2000))


def fed_steps(
    model: VoxtralModel, tok: TekkenTokenizer, chunks: list[np.ndarray], steps: int
) -> tuple[StreamingSession, list[float]]:
    """A new live session (CUDA graphs) fed 100 chunks of 80 ms to warm up, then `steps` more
    back to back: the session and each of those `feed` calls' seconds."""
    session = StreamingSession(model, tok, StreamConfig(480), cuda_graphs=True)
    for c in chunks[:100]:
        session.feed(c)
    torch.cuda.synchronize()
    times = []
    for c in chunks[100 : 100 + steps]:
        t0 = time.perf_counter()
        session.feed(c)
        times.append(time.perf_counter() - t0)
    return session, times
