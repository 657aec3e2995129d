"""The log-mel of a few frames on CUDA in three Triton kernels (CI runs them in Triton's
interpreter): a streaming step's 8 frames, read from the pinned buffer the host wrote them to.

Inside the step's CUDA graph the log-mel was a copy node from pinned memory (then 8-13 us before
the next kernel started), the frames' copy, the DFT as a cuBLAS sgemm and its split-K reduction,
the power, the filter bank as another sgemm and reduction, and the elementwise tail: nine nodes
(bench/RESULTS.md, twenty-fifth session). Here:

- `copy_kernel`: the samples from the pinned host buffer (mapped: the GPU reads it over the bus)
  into device memory, one program a row;
- `power_kernel`: the frames [F, 400] times the windowed DFT basis [400, 402] (re | im) in fp32
  FMA dots (no tensor cores, no TF32) over chunks of 32 samples, then re^2 + im^2, a program per
  16 bins (the whole window in one dot took 10.7 us on the H200, against 8.0 us chunked);
- `mel_kernel`: the filter bank [128, 201] times the power, then the tail of `mel_tail.log_mel`
  (max with the floor, log10, max with the low end, (. + 4) / 4, rounded once to the output
  dtype), a program per 16 mel bands.

On the H200 the step's replay went from 1,958.7-1,960.2 to 1,953.1-1,953.5 us with the same
tokens, and the log-mel's last kernel ended 18.1 us after the step's first began, against 31.1 us
(bench/RESULTS.md, twenty-sixth session). The sums run in another order than cuBLAS's, so the
log-mel differs from the torch ops' in the last bits (tests compare them within 1e-5, as the
GPU's DFT matmul against torch.stft).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import torch

from voxtral_desktop.kernels import fused, pdl

# Triton's interpreter runs a kernel's source with its module's globals: set by `_kernels`.
fmath: Any = None
ENABLED = True  # a switch for comparisons (bench/ab_mel_frames.py)
BINS_A_PROGRAM = 16
BANDS_A_PROGRAM = 16
WARPS = 4
CHUNK = 32  # samples (bins) a step of the DFT's (filter bank's) sums takes
MAX_FRAMES = 16  # frames a call may take: each program holds them all


@cache
def _kernels() -> Any:
    global fmath
    import triton
    import triton.language as tl

    fmath = fused.math_functions()
    gdc_wait, gdc_launch_dependents = pdl.triton_gdc()

    @triton.jit
    def copy_kernel(src_ptr, dst_ptr, N, BLOCK: tl.constexpr, PDL: tl.constexpr):
        if PDL:  # wait for the previous kernel, then let the next one launch (kernels/pdl.py)
            gdc_wait()
            gdc_launch_dependents()
        r = tl.program_id(0)
        i = tl.arange(0, BLOCK)
        tl.store(dst_ptr + r * N + i, tl.load(src_ptr + r * N + i, mask=i < N), mask=i < N)

    @triton.jit
    def power_kernel(
        x_ptr, basis_ptr, power_ptr, SPAN, F, BINS, HOP,
        N_FFT: tl.constexpr, KC: tl.constexpr, FP: tl.constexpr, KB: tl.constexpr, PDL: tl.constexpr,
    ):  # fmt: skip
        if PDL:  # wait for the previous kernel, then let the next one launch (kernels/pdl.py)
            gdc_wait()
            gdc_launch_dependents()
        r = tl.program_id(0)
        k = tl.program_id(1) * KB + tl.arange(0, KB)
        f = tl.arange(0, FP)
        live_f = f < F
        live_k = k < BINS
        re = tl.zeros([FP, KB], tl.float32)
        im = tl.zeros([FP, KB], tl.float32)
        for n0 in range(0, N_FFT, KC):  # the window in chunks of KC samples
            n = n0 + tl.arange(0, KC)
            live_n = n < N_FFT
            at = x_ptr + r * SPAN + f[:, None] * HOP + n[None, :]  # frame f is samples f * HOP ..
            frames = tl.load(at, mask=live_f[:, None] & live_n[None, :], other=0.0)  # [FP, KC]
            at = basis_ptr + n[:, None] * (2 * BINS) + k[None, :]
            basis_mask = live_n[:, None] & live_k[None, :]
            re = tl.dot(frames, tl.load(at, mask=basis_mask, other=0.0), re, input_precision="ieee")
            im = tl.dot(frames, tl.load(at + BINS, mask=basis_mask, other=0.0), im, input_precision="ieee")
        dst = power_ptr + (r * F + f[:, None]) * BINS + k[None, :]
        tl.store(dst, re * re + im * im, mask=live_f[:, None] & live_k[None, :])

    @triton.jit
    def mel_kernel(
        power_ptr, filters_ptr, out_ptr, F, BINS, MELS, FLOOR, LOW,
        KP: tl.constexpr, KC: tl.constexpr, FP: tl.constexpr, MB: tl.constexpr, NO_LOG10: tl.constexpr,
        PDL: tl.constexpr,
    ):  # fmt: skip
        if PDL:
            gdc_wait()
            gdc_launch_dependents()
        r = tl.program_id(0)
        m = tl.program_id(1) * MB + tl.arange(0, MB)
        f = tl.arange(0, FP)
        live_m = m < MELS
        live_f = f < F
        mel = tl.zeros([MB, FP], tl.float32)
        for k0 in range(0, KP, KC):  # the bins in chunks of KC
            k = k0 + tl.arange(0, KC)
            live_k = k < BINS
            at = filters_ptr + m[:, None] * BINS + k[None, :]
            filters = tl.load(at, mask=live_m[:, None] & live_k[None, :], other=0.0)  # [MB, KC]
            at = power_ptr + (r * F + f[None, :]) * BINS + k[:, None]
            power = tl.load(at, mask=live_k[:, None] & live_f[None, :], other=0.0)  # [KC, FP]
            mel = tl.dot(filters, power, mel, input_precision="ieee")
        mel = tl.maximum(mel, FLOOR)
        if NO_LOG10:  # Triton's interpreter (CI): its tl has no log10, and its math is numpy's
            lg = tl.log(mel) * 0.4342944819032518
        else:
            lg = fmath.log10(mel)
        y = (tl.maximum(lg, LOW) + 4.0) / 4.0
        dst = out_ptr + (r * MELS + m[:, None]) * F + f[None, :]
        tl.store(dst, y.to(out_ptr.dtype.element_ty), mask=live_m[:, None] & live_f[None, :])

    return copy_kernel, power_kernel, mel_kernel


def applies(samples: torch.Tensor, n_frames: int, basis: torch.Tensor) -> bool:
    """Whether `log_mel` takes these samples [B, span] float32 on the device that holds `basis`:
    samples there, or in pinned host memory the device reads (a captured step's input buffer)."""
    if not (ENABLED and fused.enabled(basis) and n_frames <= MAX_FRAMES):
        return False
    shaped = samples.dtype == torch.float32 and samples.dim() == 2 and samples.is_contiguous()
    return shaped and (samples.device == basis.device or samples.is_pinned())


def log_mel(
    samples: torch.Tensor,
    n_frames: int,
    hop: int,
    basis: torch.Tensor,
    filters: torch.Tensor,
    floor: float,
    low: float,
    dtype: torch.dtype,
) -> torch.Tensor:
    """samples [B, span] float32 (frame j is samples[:, j hop : j hop + n_fft]; on the device of
    `basis` or pinned) -> the normalised log-mel [B, n_mels, n_frames] in `dtype` on that device:
    the windowed DFT `basis` [n_fft, 2 bins] (re | im), the mel `filters` [n_mels, bins] there."""
    kernels = _kernels()
    device = basis.device
    B, span = samples.shape
    n_fft, bins = basis.shape[0], basis.shape[1] // 2
    mels = filters.shape[0]
    assert filters.shape[1] == bins and span >= (n_frames - 1) * hop + n_fft
    launch = pdl.triton_options(device)
    x = samples
    if not samples.is_cuda:  # pinned: one kernel copies it in (the others read it many times)
        x = torch.empty(B, span, dtype=torch.float32, device=device)
        kernels[0][(B,)](samples, x, span, BLOCK=fused._next_pow2(span), **launch)
    frames = max(16, fused._next_pow2(n_frames))  # the dots' rows: at least 16
    power = torch.empty(B, n_frames, bins, dtype=torch.float32, device=device)
    kernels[1][(B, fused.triton_cdiv(bins, BINS_A_PROGRAM))](
        x, basis, power, span, n_frames, bins, hop,
        N_FFT=n_fft, KC=CHUNK, FP=frames, KB=BINS_A_PROGRAM, num_warps=WARPS, **launch,
    )  # fmt: skip
    out = torch.empty(B, mels, n_frames, dtype=dtype, device=device)
    kernels[2][(B, fused.triton_cdiv(mels, BANDS_A_PROGRAM))](
        power, filters, out, n_frames, bins, mels, floor, low,
        KP=fused._next_pow2(bins), KC=CHUNK, FP=frames, MB=BANDS_A_PROGRAM,
        NO_LOG10=not hasattr(fmath, "log10"), num_warps=WARPS, **launch,
    )  # fmt: skip
    return out
