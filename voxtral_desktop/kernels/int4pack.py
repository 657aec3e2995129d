"""Q4_0 through PyTorch's int4 "tinygemm" kernels (CPU and CUDA), losslessly repacked.

Q4_0 stores w = (q - 8) * d with 4-bit codes q and one f16 scale d per 32 weights. tinygemm
computes w = (q - 8) * scale + zero per group, so Q4_0 maps onto it exactly with group size 32,
scale = d, zero = 0: the integer codes are untouched. What changes numerically: d is rounded
f16 -> bf16 and the activations are bf16 (the only dtype with fast kernels on x86 and CUDA).
Tests compare both backends against `q4_linear_reference`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from voxtral_desktop.kernels.q4 import Q4_0_BLOCK, Q4Weight, split_q4_0


def q4_0_codes(weight: Q4Weight) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes uint8 [N, K] in 0..15 in natural element order, scales f16 [N, K/32])."""
    scales, qs = split_q4_0(weight.blocks)  # [N, nb], [N, nb, 16]
    codes = torch.cat([qs & 0x0F, qs >> 4], dim=-1)  # [N, nb, 32]: low nibbles are elements 0..15
    return codes.reshape(weight.shape), scales


def _scales_and_zeros(scales: torch.Tensor) -> torch.Tensor:
    """f16 [N, K/32] -> tinygemm's bf16 [K/32, N, 2] (scale, zero=0)."""
    s = scales.t().to(torch.bfloat16)  # [K/32, N]
    return torch.stack([s, torch.zeros_like(s)], dim=-1).contiguous()


def dequantize_by_identity(
    x_to_y, in_features: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """The dense [N, K] matrix behind an opaque packed layout: the kernel itself times identity
    rows (I W^T = W^T), K rows at a time in slices of 1,024 so the identity stays small."""
    parts = []
    for start in range(0, in_features, 1024):
        rows = torch.arange(min(1024, in_features - start), device=device)
        eye = torch.zeros(len(rows), in_features, dtype=torch.bfloat16, device=device)
        eye[rows, start + rows] = 1
        parts.append(x_to_y(eye))  # [rows, N]: columns start.. of W, transposed
    return torch.cat(parts).t().contiguous().to(dtype)


@dataclass(frozen=True)
class PackedInt4:
    packed: torch.Tensor
    scales_and_zeros: torch.Tensor  # bf16 [K/32, N, 2]
    out_features: int
    in_features: int


class _Int4Backend:
    """What the CPU and CUDA tinygemm backends share."""

    separate_bias = True  # the kernel takes no bias: `linear` adds it as one more op

    def linear(self, x: torch.Tensor, prepared: object, bias: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def dequantize(self, prepared: object, dtype: torch.dtype) -> torch.Tensor:
        """The dense matrix, recovered through the kernel itself (its packed layout is opaque)."""
        assert isinstance(prepared, PackedInt4)
        return dequantize_by_identity(
            lambda eye: self.linear(eye, prepared, None), prepared.in_features, dtype, prepared.packed.device
        )


class CpuInt4Backend(_Int4Backend):
    """`aten._weight_int4pack_mm_for_cpu` with bf16 activations (AVX2/AVX-512 and NEON kernels)."""

    name = "cpu-int4"

    @staticmethod
    def supports(weight: Q4Weight) -> bool:
        n, k = weight.shape
        return n % 16 == 0 and k % 32 == 0

    def prepare(self, weight: Q4Weight, device: torch.device) -> PackedInt4:
        codes, scales = q4_0_codes(weight.to("cpu"))
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.to(torch.int32), 2)
        return PackedInt4(packed, _scales_and_zeros(scales), *weight.shape)

    def linear(self, x: torch.Tensor, prepared: object, bias: torch.Tensor | None) -> torch.Tensor:
        assert isinstance(prepared, PackedInt4)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, prepared.in_features).to(torch.bfloat16).contiguous()  # [M, K]
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(
            x2, prepared.packed, Q4_0_BLOCK, prepared.scales_and_zeros
        )
        y = y.to(x.dtype).reshape(*lead, prepared.out_features)
        return y if bias is None else y + bias


class CudaInt4Backend(_Int4Backend):
    """`aten._weight_int4pack_mm` (tinygemm, SM80+); inner K tiles of 8 need K % 128 == 0."""

    name = "cuda-int4"
    inner_k_tiles = 8

    @staticmethod
    def supports(weight: Q4Weight) -> bool:
        n, k = weight.shape
        return n % 8 == 0 and k % (CudaInt4Backend.inner_k_tiles * 16) == 0

    def prepare(self, weight: Q4Weight, device: torch.device) -> PackedInt4:
        codes, scales = q4_0_codes(weight.to(device))
        # The CUDA packer takes uint8 [N, K/2] with the even element in the high nibble.
        pairs = ((codes[:, ::2] << 4) | codes[:, 1::2]).to(torch.uint8)
        packed = torch.ops.aten._convert_weight_to_int4pack(pairs, self.inner_k_tiles)
        return PackedInt4(packed, _scales_and_zeros(scales).to(device), *weight.shape)

    def linear(self, x: torch.Tensor, prepared: object, bias: torch.Tensor | None) -> torch.Tensor:
        assert isinstance(prepared, PackedInt4)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, prepared.in_features).to(torch.bfloat16).contiguous()
        y = torch.ops.aten._weight_int4pack_mm(x2, prepared.packed, Q4_0_BLOCK, prepared.scales_and_zeros)
        y = y.to(x.dtype).reshape(*lead, prepared.out_features)
        return y if bias is None else y + bias
