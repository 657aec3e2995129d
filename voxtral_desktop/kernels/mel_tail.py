"""The log-mel's elementwise work on CUDA in two Triton kernels (CI runs them in Triton's
interpreter), with the same arithmetic as the torch ops they replace inside the step's graph:

- `power`: re^2 + im^2 of the DFT's output, each square rounded before the add (no FMA), where
  torch took two squares and an add;
- `log_mel`: max(mel, 1e-10), log10 (libdevice's, the function torch calls), max(., 1.5 - 8),
  (. + 4) / 4, rounded once to the output dtype, where torch took five kernels and a cast.

Each small torch kernel in the step's graph costs ~1.8 us on the H200 (bench/RESULTS.md,
twenty-fifth session).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import torch

from voxtral_desktop.kernels import fused, pdl

# Triton's interpreter runs a kernel's source with its module's globals: set by `_kernels`.
fmath: Any = None
BLOCK = 1024


@cache
def _kernels() -> Any:
    global fmath
    import triton
    import triton.language as tl

    fmath = fused.math_functions()
    gdc_wait, gdc_launch_dependents = pdl.triton_gdc()

    @triton.jit
    def power_kernel(spec_ptr, out_ptr, BINS, BLOCK: tl.constexpr, PDL: tl.constexpr):
        if PDL:  # wait for the previous kernel, then let the next one launch (kernels/pdl.py)
            gdc_wait()
            gdc_launch_dependents()
        r = tl.program_id(0)
        k = tl.arange(0, BLOCK)
        live = k < BINS
        re = tl.load(spec_ptr + r * 2 * BINS + k, mask=live, other=0.0)
        im = tl.load(spec_ptr + r * 2 * BINS + BINS + k, mask=live, other=0.0)
        tl.store(out_ptr + r * BINS + k, re * re + im * im, mask=live)

    @triton.jit
    def log_mel_kernel(
        mel_ptr, out_ptr, N, FLOOR, LOW, BLOCK: tl.constexpr, PDL: tl.constexpr, NO_LOG10: tl.constexpr
    ):  # fmt: skip
        if PDL:
            gdc_wait()
            gdc_launch_dependents()
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        live = i < N
        x = tl.load(mel_ptr + i, mask=live, other=1.0)
        x = tl.maximum(x, FLOOR)
        if NO_LOG10:  # Triton's interpreter (CI): its tl has no log10, and its math is numpy's
            lg = tl.log(x) * 0.4342944819032518
        else:
            lg = fmath.log10(x)
        y = tl.maximum(lg, LOW)
        tl.store(out_ptr + i, ((y + 4.0) / 4.0).to(out_ptr.dtype.element_ty), mask=live)

    return power_kernel, log_mel_kernel


def applies(x: torch.Tensor) -> bool:
    return fused.enabled(x) and x.dtype == torch.float32 and x.is_contiguous()


def power(spec: torch.Tensor) -> torch.Tensor:
    """spec [..., n, 2 B] float32 (re | im, contiguous; `applies`) -> re^2 + im^2 [..., n, B]."""
    bins = spec.shape[-1] // 2
    out = torch.empty(*spec.shape[:-1], bins, dtype=torch.float32, device=spec.device)
    rows = spec.numel() // spec.shape[-1]
    launch = pdl.triton_options(spec.device)
    _kernels()[0][(rows,)](spec, out, bins, BLOCK=fused._next_pow2(bins), enable_fp_fusion=False, **launch)
    return out


def log_mel(mel: torch.Tensor, floor: float, low: float, dtype: torch.dtype) -> torch.Tensor:
    """(max(log10(max(mel, floor)), low) + 4) / 4 in fp32, rounded once to `dtype`."""
    out = torch.empty(mel.shape, dtype=dtype, device=mel.device)
    n = mel.numel()
    _kernels()[1][(fused.triton_cdiv(n, BLOCK),)](
        mel, out, n, floor, low, BLOCK=BLOCK, NO_LOG10=not hasattr(fmath, "log10"),
        **pdl.triton_options(mel.device),
    )  # fmt: skip
    return out
