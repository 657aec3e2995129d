"""The encoder's convolution stem for a few mel frames on CUDA (a streaming step's 8): each conv's
unfolded input built by one Triton kernel from its causal tail and its new frames, which also
moves the tail on (CI runs the kernel in Triton's interpreter).

`WhisperEncoder.forward` concatenates a conv's tail and its input (a copy kernel), copies the new
tail out (another), and `ConvLayer.forward` unfolds the input for its matmul (a third copy), then
the matmul and GELU: with conv2's split-K reduction, 11 kernels from the log-mel to the first
layer, 27.8 us on the H200 (bench/RESULTS.md, twenty-sixth session's kernel list). Here a
program takes a block of one row's channels over all its frames:

- it reads the old tail and the new frames of its channels (for conv2, conv1's output before its
  GELU, applied here in fp32 and rounded once, as `F.gelu` rounds it),
- writes their unfolded columns, cols[b, t, 3 c + j] = [tail | x][b, c, stride t + j],
- then, once every thread of the program has read the tail (a barrier), stores the new tail:
  the last frames of [tail | x] (for conv2, after GELU).

So the stem is: unfold, matmul, unfold (conv1's GELU inside), matmul (and reduction), GELU: six
kernels. The values are the torch ops' own: the copies move values, and GELU is the same erf
formula in fp32. On the H200 the step's replay went from 1,941-1,943 to 1,934-1,936 us with the
same tokens (bench/ab_conv_stem.py; bench/RESULTS.md, twenty-eighth session).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import torch

from voxtral_desktop.kernels import fused, pdl

# Triton's interpreter runs a kernel's source with its module's globals: set by `_kernels`.
fmath: Any = None
ENABLED = True  # a switch for comparisons (bench/ab_conv_stem.py)
MAX_FRAMES = 16  # frames a call may take: a program holds them all
CHANNELS_A_PROGRAM = 32
TAPS = 3  # both convs' kernel size


@cache
def _kernels() -> Any:
    global fmath
    import triton
    import triton.language as tl

    fmath = fused.math_functions()
    gdc_wait, gdc_launch_dependents = pdl.triton_gdc()

    @triton.jit
    def unfold_kernel(
        tail_ptr, x_ptr, cols_ptr, C, T, T_OUT,
        s_tb, s_tc, s_xb, s_xc, s_xt,
        TAIL: tl.constexpr, STRIDE: tl.constexpr, GELU: tl.constexpr, BC: tl.constexpr,
        TP: tl.constexpr, PDL: tl.constexpr,
    ):  # fmt: skip
        if PDL:  # wait for the previous kernel, then let the next one launch (kernels/pdl.py)
            gdc_wait()
            gdc_launch_dependents()
        b = tl.program_id(0)
        c = tl.program_id(1) * BC + tl.arange(0, BC)
        live_c = c < C
        t = tl.arange(0, TP)  # output frames
        j = tl.arange(0, 4)  # taps (3 of 4)
        # input frame of [tail | x] under output frame t, tap j: [TP, 4]
        i = t[:, None] * STRIDE + j[None, :]
        live = (t[:, None] < T_OUT) & (j[None, :] < 3)
        in_tail = i < TAIL
        from_tail = live[None, :, :] & in_tail[None, :, :] & live_c[:, None, None]
        from_x = live[None, :, :] & (~in_tail)[None, :, :] & live_c[:, None, None]
        at_tail = tail_ptr + b * s_tb + c[:, None, None] * s_tc + i[None, :, :]
        at_x = x_ptr + b * s_xb + c[:, None, None] * s_xc + (i[None, :, :] - TAIL) * s_xt
        old = tl.load(at_tail, mask=from_tail, other=0.0)
        x = tl.load(at_x, mask=from_x, other=0.0)
        if GELU:  # as F.gelu: in fp32, rounded once to the stored dtype
            xf = x.to(tl.float32)
            x = (0.5 * xf * (1.0 + fmath.erf(xf * 0.7071067811865476))).to(x.dtype)
        v = tl.where(from_tail, old, x)  # [BC, TP, 4]
        dst = cols_ptr + (b * T_OUT + t[None, :, None]) * (C * 3) + c[:, None, None] * 3 + j[None, None, :]
        tl.store(dst, v.to(cols_ptr.dtype.element_ty), mask=live[None, :, :] & live_c[:, None, None])
        # The new tail: the last TAIL frames of [tail | x] (T >= TAIL), once every thread of the
        # program has read the old one (only this program reads these channels' tail).
        tl.debug_barrier()
        k = tl.arange(0, 2)  # the tail's frames (2 of 2, or 1 of 2)
        keep = live_c[:, None] & (k[None, :] < TAIL)
        at_last = x_ptr + b * s_xb + c[:, None] * s_xc + (T - TAIL + k[None, :]) * s_xt
        last = tl.load(at_last, mask=keep, other=0.0)
        if GELU:
            lf = last.to(tl.float32)
            last = (0.5 * lf * (1.0 + fmath.erf(lf * 0.7071067811865476))).to(last.dtype)
        at_new = tail_ptr + b * s_tb + c[:, None] * s_tc + k[None, :]
        tl.store(at_new, last.to(tail_ptr.dtype.element_ty), mask=keep)

    return unfold_kernel


def applies(tail: torch.Tensor, frames: int) -> bool:
    """Whether `unfold` takes a conv's input of `frames` frames with this tail [B, C, tail]
    (CUDA, Triton, a contiguous tail, a few frames, at least as many as the tail)."""
    return (
        ENABLED
        and fused.enabled(tail)
        and tail.is_contiguous()
        and 1 <= tail.shape[-1] <= min(2, frames)
        and frames <= MAX_FRAMES
    )


def unfold(tail: torch.Tensor, x: torch.Tensor, stride: int, channels_last: bool, gelu: bool) -> torch.Tensor:
    """The causal conv's unfolded input from `tail` [B, C, P] (its left context, in the dtype of
    the output) and x: [B, C, T] (channels_last False: the mel) or [B, T, C] (True: the previous
    matmul's output), GELU applied to x first where `gelu`, -> cols [B, T_out, 3 C] in tail's
    dtype, T_out = (P + T - 3) / stride + 1 (column 3 c + j: channel c, tap j, as the conv's
    weight [O, C, 3] flattens). The tail is then moved on to the last P frames of [tail | x]."""
    B, C, P = tail.shape
    T = x.shape[1] if channels_last else x.shape[2]
    assert tail.is_contiguous() and 1 <= P <= min(2, T) and T <= MAX_FRAMES
    assert x.shape[0] == B and (x.shape[2] if channels_last else x.shape[1]) == C
    t_out = (P + T - TAPS) // stride + 1
    cols = torch.empty(B, t_out, C * TAPS, dtype=tail.dtype, device=tail.device)
    s_xb, s_xc, s_xt = (x.stride(0), x.stride(2), x.stride(1)) if channels_last else x.stride()
    _kernels()[(B, fused.triton_cdiv(C, CHANNELS_A_PROGRAM))](
        tail, x, cols, C, T, t_out, tail.stride(0), tail.stride(1), s_xb, s_xc, s_xt,
        TAIL=P, STRIDE=stride, GELU=gelu, BC=CHANNELS_A_PROGRAM, TP=fused._next_pow2(t_out),
        **pdl.triton_options(tail.device),
    )  # fmt: skip
    return cols
