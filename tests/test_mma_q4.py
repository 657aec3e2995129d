"""The tensor-core Q4_0 layout (kernels/mma_q4.py) on the CPU: lossless, and in the order the
PTX ISA gives for the A operand of mma.m16n8k16 (the kernel itself runs in tests/test_gpu.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxtral_desktop.kernels.int4pack import q4_0_codes
from voxtral_desktop.kernels.mma_q4 import (
    CudaMmaQ4Backend,
    MmaQ4,
    choose_warps,
    embed_rows,
    mma_supports,
    pack,
    unpack,
)
from voxtral_desktop.kernels.q4 import Q4Weight, dequantize_q4_0, quantize_q4_0


def q4(rows: int, cols: int, seed: int = 0) -> Q4Weight:
    g = torch.Generator().manual_seed(seed)
    return Q4Weight(quantize_q4_0(torch.randn(rows, cols, generator=g)), (rows, cols))


def packed(w: Q4Weight) -> MmaQ4:
    return CudaMmaQ4Backend().prepare(w, torch.device("cpu"))


def test_pack_is_lossless() -> None:
    w = q4(48, 320, seed=1)
    codes, scales = q4_0_codes(w)
    p = packed(w)
    assert p.codes.shape == (3, 5, 32, 4) and p.codes.dtype == torch.int32
    assert p.scales.shape == (3, 5, 8, 4) and p.scales.dtype == torch.float16
    back_codes, back_scales = unpack(p)
    assert torch.equal(back_codes, codes) and torch.equal(back_scales, scales)
    # chunked packing gives the same words
    words, _ = pack(codes, scales, tiles_at_once=1)
    assert torch.equal(words, p.codes)


def test_dense_form_and_rows_equal_the_gguf_dequantisation() -> None:
    w = q4(64, 256, seed=2)
    p, backend = packed(w), CudaMmaQ4Backend()
    want = dequantize_q4_0(w.blocks)
    assert torch.equal(backend.dequantize(p, torch.float32), want)
    ids = torch.tensor([[0, 17, 63], [8, 31, 40]])
    assert torch.equal(embed_rows(p, ids, torch.float32), want[ids])
    assert embed_rows(p, ids, torch.bfloat16).dtype == torch.bfloat16


def _bf16_pair(word: np.uint32) -> tuple[float, float]:
    """A bf16x2 register as two floats (low half first)."""
    lo, hi = int(word) & 0xFFFF, int(word) >> 16
    as_f32 = np.array([lo << 16, hi << 16], dtype=np.uint32).view(np.float32)
    return float(as_f32[0]), float(as_f32[1])


def test_words_decode_to_the_mma_a_fragments() -> None:
    """Decode every lane's words the way q4_mma.cu does ((w >> 4h) & 0x000F000F | 0x43004300,
    then - 136) and place the pairs where the PTX ISA puts the A fragment of m16n8k16 (bf16):
    register h of lane 4g + t holds row g + 8 (h & 1), columns 2t + 8 (h >> 1) and + 1. The
    16 x 16 tiles so assembled must be the weights q - 8."""
    w = q4(32, 128, seed=3)
    codes, _ = q4_0_codes(w)
    want = codes.to(torch.int64).numpy() - 8
    p = packed(w)
    words = p.codes.numpy().view(np.uint32)  # [tiles, iters, 32, 4]
    for tile in range(words.shape[0]):
        for it in range(words.shape[1]):
            for j in range(4):
                a = np.full((16, 16), np.nan)
                for lane in range(32):
                    g, t = lane // 4, lane % 4
                    word = words[tile, it, lane, j]
                    for h in range(4):
                        pair = ((word >> np.uint32(4 * h)) & np.uint32(0x000F000F)) | np.uint32(0x43004300)
                        lo, hi = _bf16_pair(pair)
                        row, col = g + 8 * (h & 1), 2 * t + 8 * (h >> 1)
                        a[row, col], a[row, col + 1] = lo - 136, hi - 136
                rows = slice(16 * tile, 16 * tile + 16)
                cols = slice(64 * it + 16 * j, 64 * it + 16 * j + 16)
                np.testing.assert_array_equal(a, want[rows, cols])


def test_scales_are_where_the_kernel_reads_them() -> None:
    """Lane g reads the uint2 at [tile, iter, g]: halves (g, group 2 iter), (g, 2 iter + 1),
    (g + 8, 2 iter), (g + 8, 2 iter + 1) of the tile's rows."""
    w = q4(32, 192, seed=4)
    _, scales = q4_0_codes(w)
    s = packed(w).scales
    for tile in range(2):
        for it in range(3):
            for g in range(8):
                r = 16 * tile + g
                want = [
                    scales[r, 2 * it],
                    scales[r, 2 * it + 1],
                    scales[r + 8, 2 * it],
                    scales[r + 8, 2 * it + 1],
                ]
                assert torch.equal(s[tile, it, g], torch.stack(want))


def test_supported_shapes_and_warps() -> None:
    assert mma_supports((6144, 3072)) and mma_supports((1280, 5120))
    assert not mma_supports((40, 64)) and not mma_supports((64, 96))
    for tiles, iters, nt in [(80, 20, 1), (80, 80, 8), (8192, 48, 1), (384, 144, 4), (1, 1, 1)]:
        warps = choose_warps(tiles, iters, nt)
        assert warps in (4, 8, 16) and warps * nt <= 64
        assert warps == 4 or warps <= iters


def test_the_kernel_needs_cuda() -> None:
    """On a machine with no GPU the backend is never chosen (kernels/select.py): asking for it
    is a clear error, not a crash inside NVRTC."""
    from voxtral_desktop.errors import ConfigError
    from voxtral_desktop.kernels.select import choose_q4_backend

    with pytest.raises(ConfigError, match="mma"):
        choose_q4_backend(torch.device("cpu"), "mma")
