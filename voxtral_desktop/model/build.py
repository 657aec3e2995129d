"""Materialise a `VoxtralModel` from named checkpoint tensors.

The model is built on the meta device (no memory), then each `nn.Linear` is replaced by the
module that fits its stored weight: a dense `nn.Linear` in the compute dtype, or a `Q4Linear`
that keeps the Q4_0 blocks. Norms, biases and conv weights are copied in the compute dtype.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from voxtral_desktop.config import ModelConfig
from voxtral_desktop.kernels.linear import REFERENCE, Q4Backend, Q4Linear, TiedEmbedding
from voxtral_desktop.kernels.q4 import Q4Weight, dequantize_q4_0
from voxtral_desktop.model.voxtral import VoxtralModel, checkpoint_name

WeightLike = torch.Tensor | Q4Weight


def _dense(t: WeightLike, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(t, Q4Weight):
        raise TypeError("a Q4_0 tensor where a dense one is needed")
    return t.to(device=device, dtype=dtype)


def build_model(
    config: ModelConfig,
    tensors: Mapping[str, WeightLike],
    *,
    device: torch.device,
    dtype: torch.dtype,
    q4_backend: Q4Backend | None = REFERENCE,
) -> VoxtralModel:
    """Tensors are keyed by checkpoint name and already validated against `expected_tensors`.

    `q4_backend=None` dequantises every Q4_0 matrix once, here, into dense `dtype` weights.
    """
    if q4_backend is None:
        tensors = {k: dequantize_q4_0(v.blocks.to(device), dtype) if isinstance(v, Q4Weight) else v for k, v in tensors.items()}
        q4_backend = REFERENCE
    with torch.device("meta"):
        model = VoxtralModel(config)

    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear):
            continue
        stem = checkpoint_name(name)
        weight = tensors[stem + ".weight"]
        bias = tensors.get(stem + ".bias")
        dense_bias = None if bias is None else _dense(bias, device, dtype)
        replacement: nn.Module
        if isinstance(weight, Q4Weight):
            replacement = Q4Linear(weight.to(device), dense_bias, q4_backend)
        else:
            replacement = nn.Linear(module.in_features, module.out_features, bias=bias is not None, device="meta")
            replacement.weight = nn.Parameter(_dense(weight, device, dtype), requires_grad=False)
            if dense_bias is not None:
                replacement.bias = nn.Parameter(dense_bias, requires_grad=False)
        model.set_submodule(name, replacement)

    table = tensors[checkpoint_name("tok_embeddings.weight")]
    table = table.to(device) if isinstance(table, Q4Weight) else _dense(table, device, dtype)
    model.tok_embeddings = TiedEmbedding(table, q4_backend)

    for name, param in list(model.named_parameters()):
        if param.is_meta:
            owner, _, attr = name.rpartition(".")
            value = nn.Parameter(_dense(tensors[checkpoint_name(name)], device, dtype), requires_grad=False)
            setattr(model.get_submodule(owner), attr, value)
    return model.eval().requires_grad_(False)
