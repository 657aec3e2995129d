"""Materialise a `VoxtralModel` from named checkpoint tensors.

The model is built on the meta device (no memory), then each `nn.Linear` is replaced by the
module that fits its stored weight: a dense `nn.Linear` in the compute dtype, or a `Q4Linear`
whose backend keeps its own layout of the Q4_0 codes on the device. Norms, biases and conv
weights are copied in the compute dtype.

With `fuse=True` the q/k/v projections (and the SwiGLU gate/up pair) become one matmul each:
their weight rows are concatenated, which for Q4_0 is a plain concatenation of row blocks, so
every output row is computed from the same bytes as before. For a backend that computes SwiGLU
in the gate/up matmul (`gates_swiglu`), the gate and up rows are interleaved by 8 instead.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from voxtral_desktop.config import ModelConfig
from voxtral_desktop.kernels.linear import (
    GATE_ROWS,
    REFERENCE,
    Q4Backend,
    Q4Linear,
    TiedEmbedding,
    interleave_gate_up,
)
from voxtral_desktop.kernels.q4 import Q4Weight, dequantize_q4_0
from voxtral_desktop.model.layers import Attention, FeedForward
from voxtral_desktop.model.voxtral import VoxtralModel, checkpoint_name

WeightLike = torch.Tensor | Q4Weight

# Sub-linears that `fuse=True` replaces, keyed by the fused attribute.
FUSED: dict[type[nn.Module], dict[str, tuple[str, ...]]] = {
    Attention: {"wqkv": ("wq", "wk", "wv")},
    FeedForward: {"w13": ("w1", "w3")},
}


def _dense(t: WeightLike, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(t, Q4Weight):
        raise TypeError("a Q4_0 tensor where a dense one is needed")
    return t.to(device=device, dtype=dtype)


def _make_linear(
    weight: WeightLike,
    bias: torch.Tensor | None,
    device: torch.device,
    dtype: torch.dtype,
    backend: Q4Backend,
    gated: bool = False,
) -> nn.Module:
    dense_bias = None if bias is None else _dense(bias, device, dtype)
    if isinstance(weight, Q4Weight):
        return Q4Linear(weight, dense_bias, backend, device, gated=gated)
    out_features, in_features = weight.shape
    linear = nn.Linear(in_features, out_features, bias=bias is not None, device="meta")
    linear.weight = nn.Parameter(_dense(weight, device, dtype), requires_grad=False)
    if dense_bias is not None:
        linear.bias = nn.Parameter(dense_bias, requires_grad=False)
    return linear


def _concat_rows(weights: list[WeightLike]) -> WeightLike:
    if all(isinstance(w, Q4Weight) for w in weights):
        q4 = [w for w in weights if isinstance(w, Q4Weight)]
        return Q4Weight(torch.cat([w.blocks for w in q4]), (sum(w.shape[0] for w in q4), q4[0].shape[1]))
    dense = [dequantize_q4_0(w.blocks) if isinstance(w, Q4Weight) else w.float() for w in weights]
    return torch.cat(dense)


def build_model(
    config: ModelConfig,
    tensors: Mapping[str, WeightLike],
    *,
    device: torch.device,
    dtype: torch.dtype,
    q4_backend: Q4Backend | None = REFERENCE,
    fuse: bool = False,
) -> VoxtralModel:
    """Tensors are keyed by checkpoint name and already validated against `expected_tensors`.

    `q4_backend=None` dequantises every Q4_0 matrix once, here, into dense `dtype` weights.
    """
    if q4_backend is None:
        tensors = {
            k: dequantize_q4_0(v.blocks, dtype) if isinstance(v, Q4Weight) else v for k, v in tensors.items()
        }
        q4_backend = REFERENCE
    with torch.device("meta"):
        model = VoxtralModel(config)

    fused_away: set[str] = set()
    if fuse:
        for name, module in list(model.named_modules()):
            for attr, parts in FUSED.get(type(module), {}).items():
                stems = [checkpoint_name(f"{name}.{p}") for p in parts]
                weights = [tensors[s + ".weight"] for s in stems]
                biases = [tensors.get(s + ".bias") for s in stems]
                bias = None
                if any(b is not None for b in biases):
                    rows = [w.shape[0] for w in weights]
                    bias = torch.cat(
                        [
                            torch.zeros(r) if b is None else _dense(b, torch.device("cpu"), torch.float32)
                            for b, r in zip(biases, rows, strict=True)
                        ]
                    )
                # A backend that computes SwiGLU in the gate/up matmul's epilogue takes the pair
                # with rows interleaved by 8 (kernels/linear.interleave_gate_up).
                gated = (
                    attr == "w13"
                    and getattr(q4_backend, "gates_swiglu", False)
                    and all(isinstance(w, Q4Weight) for w in weights)
                    and weights[0].shape[0] % GATE_ROWS == 0
                )
                if gated:
                    q4 = [w for w in weights if isinstance(w, Q4Weight)]
                    fused_weight: WeightLike = Q4Weight(
                        interleave_gate_up(q4[0].blocks, q4[1].blocks), (2 * q4[0].shape[0], q4[0].shape[1])
                    )
                    if bias is not None:
                        bias = interleave_gate_up(*bias.chunk(2))
                else:
                    fused_weight = _concat_rows(weights)
                setattr(module, attr, _make_linear(fused_weight, bias, device, dtype, q4_backend, gated))
                fused_away.add(f"{name}.{attr}")  # already materialised
                for p in parts:
                    setattr(module, p, None)
                    fused_away.add(f"{name}.{p}")

    for name, module in list(model.named_modules()):
        if not isinstance(module, nn.Linear) or name in fused_away:
            continue
        stem = checkpoint_name(name)
        stored_bias = tensors.get(stem + ".bias")
        assert stored_bias is None or isinstance(stored_bias, torch.Tensor), f"{stem}.bias must be dense"
        replacement = _make_linear(tensors[stem + ".weight"], stored_bias, device, dtype, q4_backend)
        model.set_submodule(name, replacement)

    table = tensors[checkpoint_name("tok_embeddings.weight")]
    if not isinstance(table, Q4Weight):
        table = _dense(table, device, dtype)
    model.tok_embeddings = TiedEmbedding(table, q4_backend, device)

    for name, param in list(model.named_parameters()):
        if param.is_meta:
            owner, _, attr = name.rpartition(".")
            value = nn.Parameter(_dense(tensors[checkpoint_name(name)], device, dtype), requires_grad=False)
            setattr(model.get_submodule(owner), attr, value)
    return model.eval().requires_grad_(False)
