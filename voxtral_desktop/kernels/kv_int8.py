"""Int8 entries for the KV caches: the plain torch reference of what the fused kernels store.

Each cached key or value vector (one position of one head, head_dim numbers) is stored as int8
codes with one fp32 scale: x ~= codes * scale, scale = max|x| / 127, codes = round(x / scale).
That halves the decoder's cache (8,192 positions of 26 layers: 0.87 GB in bf16) and the bytes
attention reads per step, at a relative error of at most 1/254 of each vector's largest entry
(llama.cpp's q8_0 KV cache makes the same trade with blocks of 32).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

QMAX = 127.0


def quantize_kv(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [..., D] -> (codes int8 [..., D], scales fp32 [...]); an all-zero vector gets scale 0."""
    xf = x.float()
    scale = xf.abs().amax(dim=-1) / QMAX
    inv = torch.where(scale > 0, 1.0 / scale, torch.zeros_like(scale))
    codes = torch.round(xf * inv[..., None]).clamp_(-QMAX, QMAX).to(torch.int8)
    return codes, scale


def dequantize_kv(codes: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """codes [..., D] * scale [...] in `dtype`."""
    return (codes.float() * scale[..., None]).to(dtype)


@dataclass(frozen=True)
class LayerKV:
    """One layer's cached keys and values [B, Hkv, S, D] as attention reads them: in the compute
    dtype, or int8 codes with per-vector scales [B, Hkv, S] (`k_scale is not None`)."""

    k: torch.Tensor
    v: torch.Tensor
    k_scale: torch.Tensor | None = None
    v_scale: torch.Tensor | None = None

    @property
    def quantized(self) -> bool:
        return self.k_scale is not None

    def dense(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values in `dtype` (dequantised if stored as int8)."""
        if self.k_scale is None or self.v_scale is None:
            return self.k.to(dtype), self.v.to(dtype)
        return dequantize_kv(self.k, self.k_scale, dtype), dequantize_kv(self.v, self.v_scale, dtype)
