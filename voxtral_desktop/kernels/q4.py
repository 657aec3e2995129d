"""Q4_0 weights: the GGUF block layout, and its plain torch reference.

A Q4_0 row of K weights is K/32 blocks of 18 bytes: an f16 scale `d`, then 16 bytes where byte j
holds element j in its low nibble and element j+16 in its high nibble; value = (nibble - 8) * d.
`Q4Weight.blocks` keeps exactly the bytes of the GGUF tensor (rows x K/32*18, uint8), so a model
loaded from a GGUF file is a memmap away from the file and every faster kernel can be checked
against `dequantize_q4_0` below, which is bit-exact with `gguf.quants.dequantize`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Q4_0_BLOCK = 32  # weights per block
Q4_0_BLOCK_BYTES = 18  # 2 bytes f16 scale + 16 bytes of nibbles


@dataclass(frozen=True)
class Q4Weight:
    """A Q4_0-quantised matrix: GGUF bytes plus the logical (out_features, in_features) shape."""

    blocks: torch.Tensor  # uint8 [out_features, in_features // 32 * 18]
    shape: tuple[int, int]

    def __post_init__(self) -> None:
        rows, cols = self.shape
        if cols % Q4_0_BLOCK:
            raise ValueError(f"Q4_0 needs in_features divisible by 32, got {cols}")
        expect = (rows, cols // Q4_0_BLOCK * Q4_0_BLOCK_BYTES)
        if self.blocks.dtype != torch.uint8 or tuple(self.blocks.shape) != expect:
            raise ValueError(
                f"Q4_0 blocks must be uint8 {expect}, got {self.blocks.dtype} {tuple(self.blocks.shape)}"
            )

    def to(self, device: torch.device | str) -> Q4Weight:
        return Q4Weight(self.blocks.to(device), self.shape)


def split_q4_0(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split [..., nb*18] uint8 bytes into (scales f16 [..., nb], nibbles uint8 [..., nb, 16])."""
    lead = blocks.shape[:-1]
    b = blocks.reshape(*lead, -1, Q4_0_BLOCK_BYTES)  # [..., nb, 18]
    scales = b[..., :2].contiguous().view(torch.float16).squeeze(-1)  # [..., nb]
    return scales, b[..., 2:]


def dequantize_q4_0(blocks: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Reference dequantisation: [..., nb*18] uint8 -> [..., nb*32] in `dtype`.

    Computed as f32 (nibble - 8) * f32(d), exactly as ggml does, then cast to `dtype`.
    """
    scales, qs = split_q4_0(blocks)
    return dequantize_split_q4_0(scales, qs, dtype)


def dequantize_split_q4_0(scales: torch.Tensor, qs: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`dequantize_q4_0` of blocks already split: scales [..., nb], nibbles [..., nb, 16]."""
    lo = (qs & 0x0F).to(torch.int16) - 8  # elements 0..15 of each block
    hi = (qs >> 4).to(torch.int16) - 8  # elements 16..31
    q = torch.cat([lo, hi], dim=-1).to(torch.float32)  # [..., nb, 32]
    w = q * scales.to(torch.float32).unsqueeze(-1)
    return w.reshape(*qs.shape[:-2], -1).to(dtype)


def quantize_q4_0(weight: torch.Tensor) -> torch.Tensor:
    """Quantise a float matrix [rows, cols] to Q4_0 bytes with ggml's exact rounding (via gguf-py)."""
    from gguf import GGMLQuantizationType
    from gguf.quants import quantize

    array = weight.detach().to(torch.float32).cpu().numpy()
    return torch.from_numpy(quantize(array, GGMLQuantizationType.Q4_0))


def q4_linear_reference(x: torch.Tensor, weight: Q4Weight, bias: torch.Tensor | None = None) -> torch.Tensor:
    """y = x @ dequant(W)^T + b, the oracle every Q4 matmul kernel is tested against."""
    w = dequantize_q4_0(weight.blocks, x.dtype)
    return torch.nn.functional.linear(x, w, bias)


def q4_embedding_reference(ids: torch.Tensor, weight: Q4Weight, dtype: torch.dtype) -> torch.Tensor:
    """Rows of a Q4_0 embedding table: only the selected rows are dequantised."""
    return dequantize_q4_0(weight.blocks[ids], dtype)
