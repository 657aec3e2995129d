"""The step's end kernels (kernels/tokens.py) in Triton's interpreter, on any machine: the token
rows dequantised from the mma layout equal `mma_q4.embed_rows` bit for bit (with and without the
audio vector added), and the two-pass argmax equals torch.argmax, ties included. On a GPU the
same runs on CUDA (tests/test_gpu.py runs the step's graphs with them)."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import triton  # noqa: F401  (a missing Triton must fail, not skip)

from voxtral_desktop.kernels import tokens
from voxtral_desktop.kernels.int4pack import q4_0_codes
from voxtral_desktop.kernels.mma_q4 import MmaQ4, embed_rows, pack
from voxtral_desktop.kernels.q4 import Q4Weight, quantize_q4_0

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _table(rows: int, cols: int) -> MmaQ4:
    g = torch.Generator().manual_seed(3)
    w = Q4Weight(quantize_q4_0(torch.randn(rows, cols, generator=g)), (rows, cols))
    codes, scales = q4_0_codes(w)
    return MmaQ4(*(t.to(DEVICE) for t in pack(codes, scales)), rows, cols)


def _same(got: torch.Tensor, want: torch.Tensor) -> None:
    """Bit for bit, but for the interpreter's bf16 casts, which truncate where CUDA rounds to
    nearest (checked: 0.30468 -> 0.30273 there, 0.30469 in torch): a bf16 step or two then."""
    assert got.dtype == want.dtype and got.shape == want.shape
    if DEVICE.type == "cpu" and got.dtype == torch.bfloat16:
        step = 2**-7 * float(want.float().abs().max())
        assert float((got.float() - want.float()).abs().max()) <= 2 * step
    else:
        assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_embed_rows_from_the_mma_layout(dtype: torch.dtype) -> None:
    table = _table(48, 1088)  # 3 tiles, 17 iterations: a row takes two programs, the second partly
    ids = torch.tensor([[0, 7, 8, 15], [16, 31, 40, 47]], device=DEVICE)  # both halves of tiles
    want = embed_rows(table, ids, dtype)
    _same(tokens.embed_q4_rows(table.codes, table.scales, 1088, ids, dtype), want)
    audio = torch.randn(2, 4, 1088, generator=torch.Generator().manual_seed(4)).to(DEVICE, dtype)
    _same(tokens.embed_q4_rows(table.codes, table.scales, 1088, ids, dtype, audio), want + audio)


def test_greedy_is_torch_argmax_ties_included() -> None:
    g = torch.Generator().manual_seed(5)
    v = 2 * tokens.ARGMAX_BLOCK + 300  # three first-pass programs, the last partly
    logits = torch.randn(3, v, generator=g).bfloat16()
    logits[0, 5] = logits[0, v - 7] = 9.0  # a tie across programs: the first index wins
    logits[1, tokens.ARGMAX_BLOCK + 1] = logits[1, tokens.ARGMAX_BLOCK + 9] = 7.5  # within one
    logits[2, v - 1] = 11.0  # the very last logit
    logits = logits.to(DEVICE)
    out = torch.full((3,), -1, dtype=torch.long, device=DEVICE)
    also = torch.full((3,), -1, dtype=torch.long, device=DEVICE)
    tokens.greedy_into(logits, out, also)
    want = logits.argmax(-1)
    assert out.tolist() == want.tolist() == also.tolist() == [5, tokens.ARGMAX_BLOCK + 1, v - 1]
