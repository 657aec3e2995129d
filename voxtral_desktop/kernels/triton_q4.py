"""A Triton Q4_0 matrix-vector kernel that reads the GGUF codes directly (no repacking).

Exact in the sense of the reference: fp32 dequantisation and fp32 accumulation, whatever the
activation dtype, so a model run in fp32 with this kernel gives the reference tokens. The 18-byte
blocks are split once at load into nibbles [N, K/2] and f16 scales [N, K/32] (the same bytes,
aligned for vector loads). For more than a few rows of activations the weight is dequantised and
multiplied with cuBLAS instead, which is faster there (prefill, batched encoder chunks).
Triton is imported lazily: the package works without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import torch

from voxtral_desktop.kernels.q4 import Q4Weight, split_q4_0

GEMV_MAX_ROWS = 8  # activations rows up to which the GEMV beats dequantise + cuBLAS


@dataclass(frozen=True)
class SplitQ4:
    nibbles: torch.Tensor  # uint8 [N, K/2]: per block, byte j = element j (low) | element j+16 (high)
    scales: torch.Tensor  # f16 [N, K/32]
    out_features: int
    in_features: int


@cache
def _kernel() -> Any:
    import triton
    import triton.language as tl

    @triton.jit
    def q4_0_gemv(
        x_ptr, q_ptr, d_ptr, b_ptr, y_ptr, N, NB, stride_x, stride_y,
        HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr,
    ):  # fmt: skip
        rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)  # [BN]
        m = tl.program_id(1)
        row_ok = rows < N
        c = tl.arange(0, BLOCK_B * 16)  # byte index inside a chunk of BLOCK_B blocks
        acc = tl.zeros([BLOCK_N], dtype=tl.float32)
        for b0 in range(0, NB, BLOCK_B):
            blk = b0 + c // 16  # [BB*16] block of each byte
            j = c % 16
            ok = blk < NB
            q = tl.load(
                q_ptr + rows[:, None] * (NB * 16) + (blk * 16 + j)[None, :],
                mask=row_ok[:, None] & ok[None, :],
                other=0x88,
            )  # [BN, BB*16]
            x_lo = tl.load(x_ptr + m * stride_x + blk * 32 + j, mask=ok, other=0.0).to(tl.float32)
            x_hi = tl.load(x_ptr + m * stride_x + blk * 32 + 16 + j, mask=ok, other=0.0).to(tl.float32)
            lo = (q & 15).to(tl.float32) - 8.0
            hi = (q >> 4).to(tl.float32) - 8.0
            prod = lo * x_lo[None, :] + hi * x_hi[None, :]  # [BN, BB*16]
            per_block = tl.sum(tl.reshape(prod, [BLOCK_N, BLOCK_B, 16]), axis=2)  # [BN, BB]
            bi = b0 + tl.arange(0, BLOCK_B)
            d = tl.load(
                d_ptr + rows[:, None] * NB + bi[None, :], mask=row_ok[:, None] & (bi < NB)[None, :], other=0.0
            ).to(tl.float32)
            acc += tl.sum(per_block * d, axis=1)
        if HAS_BIAS:
            acc += tl.load(b_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
        tl.store(y_ptr + m * stride_y + rows, acc.to(y_ptr.dtype.element_ty), mask=row_ok)

    return q4_0_gemv


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def q4_0_gemv(x: torch.Tensor, w: SplitQ4, bias: torch.Tensor | None) -> torch.Tensor:
    """x [M, K] (M small) -> [M, N], fp32 accumulation."""
    M = x.shape[0]
    y = torch.empty(M, w.out_features, device=x.device, dtype=x.dtype)
    block_n, block_b = 4, 8
    grid = ((w.out_features + block_n - 1) // block_n, M)
    _kernel()[grid](
        x, w.nibbles, w.scales, bias if bias is not None else y, y,
        w.out_features, w.in_features // 32, x.stride(0), y.stride(0),
        HAS_BIAS=bias is not None, BLOCK_N=block_n, BLOCK_B=block_b, num_warps=4,
    )  # fmt: skip
    return y


def dequantize_split(w: SplitQ4, dtype: torch.dtype) -> torch.Tensor:
    q = w.nibbles.view(w.out_features, -1, 16)  # [N, nb, 16]
    codes = torch.cat([q & 15, q >> 4], dim=-1).to(torch.float32) - 8  # [N, nb, 32]
    return (codes * w.scales.to(torch.float32)[..., None]).reshape(w.out_features, w.in_features).to(dtype)


class TritonQ4Backend:
    name = "triton-q4_0"

    @staticmethod
    def supports(weight: Q4Weight) -> bool:
        return True

    def prepare(self, weight: Q4Weight, device: torch.device) -> SplitQ4:
        scales, qs = split_q4_0(weight.blocks)  # [N, nb], [N, nb, 16]
        n, k = weight.shape
        return SplitQ4(qs.reshape(n, k // 2).contiguous().to(device), scales.contiguous().to(device), n, k)

    def linear(self, x: torch.Tensor, prepared: object, bias: torch.Tensor | None) -> torch.Tensor:
        assert isinstance(prepared, SplitQ4)
        lead = x.shape[:-1]
        x2 = x.reshape(-1, prepared.in_features)
        if x2.shape[0] <= GEMV_MAX_ROWS:
            y = q4_0_gemv(x2.contiguous(), prepared, bias)
        else:
            y = torch.nn.functional.linear(x2, dequantize_split(prepared, x.dtype), bias)
        return y.reshape(*lead, prepared.out_features)
