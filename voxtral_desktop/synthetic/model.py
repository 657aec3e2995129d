"""Tiny random Voxtral checkpoints for tests and demos (no download, seconds to build).

The architecture is the real one at toy sizes. Every matmul input width is a multiple of 32 so
the weights quantise to Q4_0. Weights are drawn with std 0.5 (not a framework's default init):
tiny random models with small weights emit one repeated token, which makes token-parity tests
meaningless.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from voxtral_desktop.config import N_SPECIAL_TOKENS, DecoderConfig, EncoderConfig, ModelConfig
from voxtral_desktop.weights.names import TensorKind, expected_tensors
from voxtral_desktop.weights.native import PARAMS_JSON, SAFETENSORS, TEKKEN_JSON

TINY_TEXT_TOKENS = 256  # text ids 1000..1255: one per byte, enough for a byte-level tokenizer

_TINY_ENCODER: dict[str, Any] = {
    "dim": 64,
    "n_layers": 2,
    "n_heads": 4,
    "head_dim": 16,
    "hidden_dim": 128,
    "n_mels": 128,
    "sliding_window": 750,
}
_TINY_DECODER: dict[str, Any] = {
    "dim": 64,
    "n_layers": 2,
    "n_heads": 4,
    "n_kv_heads": 2,
    "head_dim": 32,
    "hidden_dim": 128,
    "vocab_size": N_SPECIAL_TOKENS + TINY_TEXT_TOKENS,
    "ada_t_cond_dim": 32,
}


def tiny_config(**overrides: Any) -> ModelConfig:
    """A toy ModelConfig. Override fields as `encoder_<field>=`, `decoder_<field>=` or a
    ModelConfig field, e.g. `tiny_config(decoder_vocab_size=1500, encoder_sliding_window=16)`."""
    enc, dec, top = dict(_TINY_ENCODER), dict(_TINY_DECODER), {}
    enc_fields = {f.name for f in dataclasses.fields(EncoderConfig)}
    dec_fields = {f.name for f in dataclasses.fields(DecoderConfig)}
    top_fields = {f.name for f in dataclasses.fields(ModelConfig)} - {"encoder", "decoder"}
    for key, value in overrides.items():
        if key.startswith("encoder_") and key[8:] in enc_fields:
            enc[key[8:]] = value
        elif key.startswith("decoder_") and key[8:] in dec_fields:
            dec[key[8:]] = value
        elif key in top_fields:
            top[key] = value
        else:
            raise TypeError(f"tiny_config() got an unknown override {key!r}")
    return ModelConfig(encoder=EncoderConfig(**enc), decoder=DecoderConfig(**dec), **top)


def random_tensors(
    config: ModelConfig, seed: int = 0, std: float = 0.5, dtype: torch.dtype = torch.bfloat16
) -> dict[str, torch.Tensor]:
    """Deterministic random weights for every tensor of `config` (same seed -> same bits).

    Matrices and conv kernels ~ N(0, std); norm weights ~ 1 + 0.1 N(0, 1); biases ~ 0.1 N(0, 1).
    Values are drawn in float32 and then cast, so bf16 and f32 models share their weights.
    """
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for spec in expected_tensors(config):
        noise = torch.randn(spec.shape, generator=gen, dtype=torch.float32)
        if spec.kind is not TensorKind.VECTOR:
            values = noise * std
        elif spec.name.endswith("norm.weight"):
            values = 1.0 + 0.1 * noise
        else:
            values = 0.1 * noise
        out[spec.name] = values.to(dtype).contiguous()
    return out


def write_native_model(
    out_dir: str | Path, config: ModelConfig, tensors: dict[str, torch.Tensor], tekken_json: bytes
) -> Path:
    """Write a Mistral-native checkpoint directory (params.json, consolidated.safetensors, tekken.json)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / PARAMS_JSON).write_text(json.dumps(config.to_params(), indent=2) + "\n", encoding="utf-8")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / SAFETENSORS))
    (out / TEKKEN_JSON).write_bytes(tekken_json)
    return out
