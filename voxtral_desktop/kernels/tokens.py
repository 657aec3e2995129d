"""Triton kernels at a streaming step's two ends (CUDA; CI runs them in Triton's interpreter).

Inside the step's CUDA graph every small torch op is a kernel of its own (~1.8 us each on the
H200, none with programmatic dependent launch), and these two ends were ~25 of them
(bench/step_kernels.py, bench/RESULTS.md: twenty-fifth session):

- `embed_q4_rows`: tokens' rows of the tied Q4_0 table, dequantised straight from the tensor-core
  layout (`mma_q4.MmaQ4`), optionally plus the audio vector the decoder adds: one kernel where
  `mma_q4.embed_rows` (its torch reference) is about twenty;
- `greedy_into`: the argmax of each row of logits (the first index of the maximum, as
  torch.argmax, for logits that are not NaN), in two kernels that write the token straight into
  the buffers the step feeds back, where torch took a memset, a reduction and two copies.

Both are exact: the rows are (q - 8) * d in fp32 rounded once (then the add, rounded once, as
`embed + audio` in torch), and the argmax compares the logits as they are.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import torch

from voxtral_desktop.kernels import fused, pdl

STEP_COLS = 64  # input columns an mma_q4 iteration holds (not imported: mma_q4 imports this module)
EMBED_BLOCK = 1024  # columns of a row a program dequantises
ARGMAX_BLOCK = 2048  # logits a first-pass program reduces (131,072: 64 programs a row)


@cache
def _kernels() -> Any:
    import triton
    import triton.language as tl

    gdc_wait, gdc_launch_dependents = pdl.triton_gdc()

    @triton.jit
    def embed_kernel(
        ids_ptr, codes_ptr, scales_ptr, add_ptr, out_ptr, K, ITERS,
        HAS_ADD: tl.constexpr, BLOCK: tl.constexpr, PDL: tl.constexpr,
    ):  # fmt: skip
        if PDL:  # wait for the previous kernel, then let the next one launch
            gdc_wait()
            gdc_launch_dependents()
        r = tl.program_id(0)
        cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        live = cols < K
        row = tl.load(ids_ptr + r)
        tile = row // 16
        g = row % 8
        h = (row // 8) % 2
        # column 32 jh + 8 t + 4 jl + 2 k8 + k1 of an iteration: word (lane 4 g + t, k-step
        # 2 jh + jl), nibble 4 k1 + 2 k8 + h (q4_mma.cu's layout, mma_q4.pack)
        it = cols // 64
        c = cols % 64
        jh, t, jl, k8, k1 = c // 32, (c // 8) % 4, (c // 4) % 2, (c // 2) % 2, c % 2
        block = tile * ITERS + it
        word = tl.load(codes_ptr + (block * 32 + 4 * g + t) * 4 + 2 * jh + jl, mask=live, other=0)
        q = (word >> (4 * (4 * k1 + 2 * k8 + h))) & 15
        d = tl.load(scales_ptr + block * 32 + 4 * g + 2 * h + jh, mask=live, other=0.0).to(tl.float32)
        y = ((q.to(tl.float32) - 8.0) * d).to(out_ptr.dtype.element_ty)
        if HAS_ADD:  # the audio vector, added as a separate add would (rounded once more)
            a = tl.load(add_ptr + r * K + cols, mask=live, other=0.0)
            y = (y.to(tl.float32) + a.to(tl.float32)).to(out_ptr.dtype.element_ty)
        tl.store(out_ptr + r * K + cols, y, mask=live)

    @triton.jit
    def argmax_part_kernel(
        x_ptr, val_ptr, idx_ptr, V, stride_x, PARTS, BLOCK: tl.constexpr, PDL: tl.constexpr
    ):  # fmt: skip
        if PDL:
            gdc_wait()
            gdc_launch_dependents()
        r = tl.program_id(0)
        part = tl.program_id(1)
        cols = part * BLOCK + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + r * stride_x + cols, mask=cols < V, other=float("-inf")).to(tl.float32)
        best, at = tl.max(x, axis=0, return_indices=True, return_indices_tie_break_left=True)
        tl.store(val_ptr + r * PARTS + part, best)
        tl.store(idx_ptr + r * PARTS + part, part * BLOCK + at)

    @triton.jit
    def argmax_final_kernel(
        val_ptr, idx_ptr, out_ptr, out2_ptr, PARTS, NP: tl.constexpr, PDL: tl.constexpr
    ):  # fmt: skip
        if PDL:
            gdc_wait()
            gdc_launch_dependents()
        r = tl.program_id(0)
        p = tl.arange(0, NP)
        v = tl.load(val_ptr + r * PARTS + p, mask=p < PARTS, other=float("-inf"))
        _, first = tl.max(v, axis=0, return_indices=True, return_indices_tie_break_left=True)
        token = tl.load(idx_ptr + r * PARTS + first)
        tl.store(out_ptr + r, token)
        tl.store(out2_ptr + r, token)

    return embed_kernel, argmax_part_kernel, argmax_final_kernel


def embed_applies(ids: torch.Tensor) -> bool:
    """Whether `embed_q4_rows` takes these ids (the fused kernels' condition: CUDA with Triton)."""
    return fused.enabled(ids)


def embed_q4_rows(
    codes: torch.Tensor,
    scales: torch.Tensor,
    in_features: int,
    ids: torch.Tensor,
    dtype: torch.dtype,
    add: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rows `ids` [...] of the mma-packed table (`MmaQ4.codes`, `.scales`) -> [..., K] in `dtype`
    (or in `add`'s dtype plus `add` [..., K])."""
    k = in_features
    flat = ids.reshape(-1).contiguous()
    if add is not None:
        assert add.shape == (*ids.shape, k)
        dtype = add.dtype
        add = add.contiguous()
    out = torch.empty(*ids.shape, k, dtype=dtype, device=ids.device)
    kern = _kernels()[0]
    kern[(flat.shape[0], fused.triton_cdiv(k, EMBED_BLOCK))](
        flat, codes, scales, out if add is None else add, out, k, k // STEP_COLS,
        HAS_ADD=add is not None, BLOCK=EMBED_BLOCK, **pdl.triton_options(ids.device),
    )  # fmt: skip
    return out


def greedy_applies(logits: torch.Tensor) -> bool:
    return fused.enabled(logits) and logits.dim() == 2 and logits.stride(-1) == 1


def greedy_into(logits: torch.Tensor, out: torch.Tensor, also: torch.Tensor) -> None:
    """argmax over the last dimension of logits [B, V] (`greedy_applies` must hold), written into
    `out` [B] and `also` [B] (int64, contiguous): the step's token and its fed-back copy."""
    B, V = logits.shape
    assert out.shape == (B,) and also.shape == (B,) and out.is_contiguous() and also.is_contiguous()
    parts = fused.triton_cdiv(V, ARGMAX_BLOCK)
    values = torch.empty(B, parts, dtype=torch.float32, device=logits.device)
    indices = torch.empty(B, parts, dtype=torch.int64, device=logits.device)
    _, part_kernel, final_kernel = _kernels()
    launch = pdl.triton_options(logits.device)
    part_kernel[(B, parts)](logits, values, indices, V, logits.stride(0), parts, BLOCK=ARGMAX_BLOCK, **launch)
    final_kernel[(B,)](values, indices, out, also, parts, NP=max(2, fused._next_pow2(parts)), **launch)
