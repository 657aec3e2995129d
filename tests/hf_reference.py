"""The numerical reference for the tests: HF transformers, fed our tensors (see benchmark_hf)."""

from __future__ import annotations

import numpy as np
import torch

from voxtral_desktop.benchmark_hf import hf_features, hf_generate, hf_model
from voxtral_desktop.config import StreamConfig
from voxtral_desktop.engine.batch import padded_audio

__all__ = ["hf_features", "hf_greedy_tokens", "hf_model", "pad_audio"]


def pad_audio(audio: np.ndarray, stream: StreamConfig) -> np.ndarray:
    return padded_audio(audio, stream)


def hf_greedy_tokens(model, features: torch.Tensor, stream: StreamConfig) -> list[int]:
    return hf_generate(model, features, stream)
