"""The Triton source of the Q4_0 kernels (imported only when Triton is; see triton_q4.py).

Module-level functions, because Triton resolves the helpers a kernel calls by global name.
"""

import os

import triton
import triton.language as tl

if os.environ.get("TRITON_INTERPRET") == "1":  # the interpreter has no libdevice
    fmath = tl
else:
    try:  # accurate exp (the tl builtin is approximate)
        from triton.language.extra import libdevice as fmath  # type: ignore[no-redef]
    except ImportError:  # pragma: no cover - older Triton
        fmath = tl


@triton.jit
def load_x(x_ptr, offs, mask, k_up, SWIGLU: tl.constexpr):
    """Activations at `offs` as fp32; with SWIGLU, silu(gate) * up rounded to x's dtype."""
    if SWIGLU:
        g = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        u = tl.load(x_ptr + k_up + offs, mask=mask, other=0.0).to(tl.float32)
        return (g / (1.0 + fmath.exp(-g)) * u).to(x_ptr.dtype.element_ty).to(tl.float32)
    return tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def q4_0_gemv(
    x_ptr, q_ptr, d_ptr, b_ptr, y_ptr, N, KB, NB, K_UP, stride_x, stride_y,
    HAS_BIAS: tl.constexpr, SWIGLU: tl.constexpr, BN: tl.constexpr, BB: tl.constexpr,
):  # fmt: skip
    """One activation row (program axis 0, so the programs of one weight tile run together and
    share it through L2) times BN weight rows, BB blocks of 32 weights per iteration. Per block:
    d * (sum q x - 8 sum x), so the nibbles need no offset; reduced once at the end."""
    m = tl.program_id(0)
    rows = tl.program_id(1) * BN + tl.arange(0, BN)  # [BN]
    row_ok = rows < N
    bi = tl.arange(0, BB)
    j = tl.arange(0, 16)
    acc = tl.zeros([BN, BB], dtype=tl.float32)
    for b0 in range(0, NB, BB):
        blk = b0 + bi  # [BB]
        bok = blk < NB
        wmask = row_ok[:, None] & bok[None, :]
        q = tl.load(
            q_ptr + rows[:, None, None] * KB + (blk * 16)[None, :, None] + j[None, None, :],
            mask=wmask[:, :, None],
            other=0,
        )  # [BN, BB, 16] bytes: 16 contiguous per block
        d = tl.load(d_ptr + rows[:, None] * NB + blk[None, :], mask=wmask, other=0.0).to(tl.float32)
        xo = m * stride_x + (blk * 32)[:, None] + j[None, :]  # [BB, 16] low-nibble elements
        x_lo = load_x(x_ptr, xo, bok[:, None], K_UP, SWIGLU)
        x_hi = load_x(x_ptr, xo + 16, bok[:, None], K_UP, SWIGLU)
        qx = tl.sum(
            (q & 15).to(tl.float32) * x_lo[None, :, :] + (q >> 4).to(tl.float32) * x_hi[None, :, :], axis=2
        )
        sx = tl.sum(x_lo + x_hi, axis=1)  # [BB]
        acc += d * (qx - 8.0 * sx[None, :])
    y = tl.sum(acc, axis=1)  # [BN]
    if HAS_BIAS:
        y += tl.load(b_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)
    tl.store(y_ptr + m * stride_y + rows, y.to(y_ptr.dtype.element_ty), mask=row_ok)


@triton.jit
def q4_0_matmul(
    x_ptr, q_ptr, d_ptr, b_ptr, y_ptr, M, N, KB, NB, K_UP, stride_x, stride_y,
    HAS_BIAS: tl.constexpr, SWIGLU: tl.constexpr, IEEE: tl.constexpr,
    BM: tl.constexpr, BN: tl.constexpr, BKB: tl.constexpr,
):  # fmt: skip
    ms = tl.program_id(1) * BM + tl.arange(0, BM)
    rows = tl.program_id(0) * BN + tl.arange(0, BN)
    m_ok = ms < M
    row_ok = rows < N
    c = tl.arange(0, BKB)
    acc = tl.zeros([BM, BN], dtype=tl.float32)
    for kb0 in range(0, KB, BKB):
        byte = kb0 + c
        ok = byte < KB
        wmask = row_ok[:, None] & ok[None, :]
        q = tl.load(q_ptr + rows[:, None] * KB + byte[None, :], mask=wmask, other=0)  # [BN, BKB]
        blk = byte // 16
        d = tl.load(d_ptr + rows[:, None] * NB + blk[None, :], mask=wmask, other=0.0).to(tl.float32)
        # the dequantised weight rounded to the activation dtype, like the dense reference
        lo = (((q & 15).to(tl.float32) - 8.0) * d).to(x_ptr.dtype.element_ty)
        hi = (((q >> 4).to(tl.float32) - 8.0) * d).to(x_ptr.dtype.element_ty)
        k_lo = blk * 32 + byte % 16
        xmask = m_ok[:, None] & ok[None, :]
        x_lo = load_x(x_ptr, ms[:, None] * stride_x + k_lo[None, :], xmask, K_UP, SWIGLU)
        x_hi = load_x(x_ptr, ms[:, None] * stride_x + (k_lo + 16)[None, :], xmask, K_UP, SWIGLU)
        x_lo = x_lo.to(x_ptr.dtype.element_ty)
        x_hi = x_hi.to(x_ptr.dtype.element_ty)
        if IEEE:
            acc += tl.dot(x_lo, tl.trans(lo), input_precision="ieee")
            acc += tl.dot(x_hi, tl.trans(hi), input_precision="ieee")
        else:
            acc += tl.dot(x_lo, tl.trans(lo))
            acc += tl.dot(x_hi, tl.trans(hi))
    if HAS_BIAS:
        acc += tl.load(b_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)[None, :]
    out = y_ptr + ms[:, None] * stride_y + rows[None, :]
    tl.store(out, acc.to(y_ptr.dtype.element_ty), mask=m_ok[:, None] & row_ok[None, :])
