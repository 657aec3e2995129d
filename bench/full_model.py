"""The full-size model with random Q4_0 weights that the device-only bench scripts share.

Built the way `voxtral-desktop bench` builds its own (`benchmark.random_q4_tensors`, nothing
downloaded), with a tekken tokenizer of 2,000 synthetic tokens for the session's detokenizer.
"""

from __future__ import annotations

import torch

from voxtral_desktop.benchmark import random_q4_tensors
from voxtral_desktop.config import ModelConfig
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
