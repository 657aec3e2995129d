"""Triton Q4_0 matmuls that read the GGUF codes directly (CUDA; no repacking, no extra bytes).

The 18-byte blocks are split once at load into nibbles [N, K/2] (byte j of a block holds element j
in its low nibble and element j + 16 in its high nibble, exactly as in the file) and f16 scales
[N, K/32]: 0.5625 bytes per weight, the Q4_0 size itself (tinygemm needs 0.625).

Two kernels, chosen by the number of activation rows M:
- `gemv` (M <= GEMV_MAX_ROWS: streaming steps, small batches): one program per activation row
  and tile of weight rows (the M programs of a tile run side by side and share it through L2;
  a variant reading each tile once for all rows, with [M, N, blocks, 16] products, measured 3x
  slower on the H100), fp32 dequantisation and accumulation, per block d * (sum q x - 8 sum x).
  Memory-bound: its speed is the bytes it streams (bench/tune_q4.py).
- `matmul` (larger M: prompt prefill, encoder chunks of files, large batches): dequantised tiles
  fed to tensor-core dots, in the activation dtype (bf16: the same rounding of the weight as the
  dense reference; fp32: exact IEEE dots).
Both take an optional bias and can compute SwiGLU's silu(gate) * up on the fly from the fused
gate/up output (`swiglu=True`), which saves a kernel and a round trip per FFN.

Accuracy: fp32 accumulation everywhere; a model run in fp32 through these kernels gives the
reference tokens. Triton is imported lazily (the package works without it); with
TRITON_INTERPRET=1 the same kernels run on the CPU, which is how CI tests them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from voxtral_desktop.kernels.q4 import Q4Weight, dequantize_split_q4_0, split_q4_0

GEMV_MAX_ROWS = 8  # activation rows up to which the memory-bound GEMV is used


@dataclass(frozen=True)
class SplitQ4:
    nibbles: torch.Tensor  # uint8 [N, K/2]: per block, byte j = element j (low) | element j+16 (high)
    scales: torch.Tensor  # f16 [N, K/32]
    out_features: int
    in_features: int


@dataclass(frozen=True)
class GemvConfig:
    block_n: int  # weight rows per program
    block_blocks: int  # Q4_0 blocks (32 weights, 16 bytes of codes) of each row per loop iteration
    num_warps: int


@dataclass(frozen=True)
class MatmulConfig:
    block_m: int
    block_n: int
    block_bytes: int
    num_warps: int
    num_stages: int


TUNING_FILE = Path(__file__).with_name("q4_tuning.json")  # written by bench/tune_q4.py


@cache
def _tuned() -> dict[str, dict[str, list[int]]]:
    """Best tile sizes per "N,K,M" measured by bench/tune_q4.py (VOXTRAL_Q4_TUNING: another file)."""
    path = Path(os.environ.get("VOXTRAL_Q4_TUNING") or TUNING_FILE)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"gemv": {}, "matmul": {}, "small": {}}
    return {key: dict(data.get(key, {})) for key in ("gemv", "matmul", "small")}


SMALL_ROWS = (1, 2, 4, 8, 16)  # the row counts bench/tune_q4_small.py measures


def small_choice(n: int, k: int, m: int) -> GemvConfig | MatmulConfig | None:
    """For a few rows (M <= 16): the faster of the GEMV and the 16-row matmul measured for this
    shape at the next measured row count (bench/tune_q4_small.py), or None if not measured."""
    if m > SMALL_ROWS[-1] or os.environ.get("VOXTRAL_Q4_GEMV") or os.environ.get("VOXTRAL_Q4_MATMUL"):
        return None
    rows = next(r for r in SMALL_ROWS if r >= m)
    entry = _tuned()["small"].get(f"{n},{k},{rows}")
    if not entry:
        return None
    kind, *cfg = entry
    return GemvConfig(*cfg) if kind == "gemv" else MatmulConfig(*cfg)


def gemv_config(n: int, k: int, m: int) -> GemvConfig:
    """Tile sizes for an [M <= 8, K] x [N, K]^T product: the tuned ones for this shape, else a
    default that is good across shapes."""
    override = os.environ.get("VOXTRAL_Q4_GEMV")  # "BN,BLOCKS,WARPS": for tuning runs
    if override:
        bn, nb, warps = (int(v) for v in override.split(","))
        return GemvConfig(bn, nb, warps)
    table = _tuned()["gemv"]
    best = table.get(f"{n},{k},{m}") or table.get(f"{n},{k},1")
    if best:
        return GemvConfig(*best)
    return GemvConfig(block_n=4, block_blocks=16, num_warps=4)


def matmul_config(n: int, k: int, m: int, dtype: torch.dtype = torch.bfloat16) -> MatmulConfig:
    override = os.environ.get("VOXTRAL_Q4_MATMUL")  # "BM,BN,BYTES,WARPS,STAGES"
    if override:
        bm, bn, nbytes, warps, stages = (int(v) for v in override.split(","))
        return MatmulConfig(bm, bn, nbytes, warps, stages)
    # Tuned in bf16; fp32 tiles take twice the shared memory, so they keep the small default.
    best = _tuned()["matmul"].get(f"{n},{k}") if dtype.itemsize == 2 else None
    if best:
        return MatmulConfig(*best)
    block_m = 16 if m <= 16 else 32 if m <= 32 else 64
    return MatmulConfig(block_m=block_m, block_n=64, block_bytes=32, num_warps=4, num_stages=3)


@cache
def _kernels() -> Any:
    from voxtral_desktop.kernels import triton_q4_jit

    return triton_q4_jit.q4_0_gemv, triton_q4_jit.q4_0_matmul


def triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def q4_0_linear(
    x: torch.Tensor, w: SplitQ4, bias: torch.Tensor | None = None, *, swiglu: bool = False
) -> torch.Tensor:
    """x [M, K] (or with `swiglu`, the gate/up pair [M, 2K]) -> x W^T + b [M, N], fp32 accumulation."""
    M = x.shape[0]
    N, K = w.out_features, w.in_features
    if x.shape[1] != (2 * K if swiglu else K):
        raise ValueError(f"activations {tuple(x.shape)} do not fit a Q4_0 matrix {N} x {K}")
    if x.stride(-1) != 1:
        x = x.contiguous()
    y = torch.empty(M, N, device=x.device, dtype=x.dtype)
    gemv, matmul = _kernels()
    args = (
        x, w.nibbles, w.scales, bias if bias is not None else y, y,
        M, N, K // 2, K // 32, K, x.stride(0), y.stride(0),
    )  # fmt: skip
    choice = small_choice(N, K, M) if x.dtype.itemsize == 2 else None  # tuned in bf16
    if isinstance(choice, GemvConfig) or (choice is None and M <= GEMV_MAX_ROWS):
        g = choice or gemv_config(N, K, M)
        gemv[(M, _cdiv(N, g.block_n))](
            *args[:5], *args[6:], HAS_BIAS=bias is not None, SWIGLU=swiglu,
            BN=g.block_n, BB=g.block_blocks, num_warps=g.num_warps,
        )  # fmt: skip
    else:
        c = choice or matmul_config(N, K, M, x.dtype)
        matmul[(_cdiv(N, c.block_n), _cdiv(M, c.block_m))](
            *args, HAS_BIAS=bias is not None, SWIGLU=swiglu, IEEE=x.dtype == torch.float32,
            BM=c.block_m, BN=c.block_n, BKB=c.block_bytes, num_warps=c.num_warps, num_stages=c.num_stages,
        )  # fmt: skip
    return y


def dequantize_split(w: SplitQ4, dtype: torch.dtype, rows: torch.Tensor | None = None) -> torch.Tensor:
    """The dense matrix (or only `rows` of it, e.g. embedding lookups) in `dtype`."""
    nib, scales = (w.nibbles, w.scales) if rows is None else (w.nibbles[rows], w.scales[rows])
    return dequantize_split_q4_0(scales, nib.view(*nib.shape[:-1], -1, 16), dtype)


class TritonQ4Backend:
    name = "triton-q4_0"

    @staticmethod
    def supports(weight: Q4Weight) -> bool:
        return True

    def prepare(self, weight: Q4Weight, device: torch.device) -> SplitQ4:
        # Split where the bytes are (the host, for a file being loaded), then move the two
        # parts: the device never holds the blocks and the split copy at once (the 226 MB
        # token table would otherwise add its size to the peak while loading).
        scales, qs = split_q4_0(weight.blocks)  # [N, nb], [N, nb, 16]
        n, k = weight.shape
        return SplitQ4(qs.reshape(n, k // 2).contiguous().to(device), scales.contiguous().to(device), n, k)

    def linear(self, x: torch.Tensor, prepared: object, bias: torch.Tensor | None) -> torch.Tensor:
        return self._apply(x, prepared, bias, swiglu=False)

    def linear_swiglu(
        self, gate_up: torch.Tensor, prepared: object, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """W (silu(gate) * up) + b from the fused gate/up output [..., 2K], in one kernel."""
        return self._apply(gate_up, prepared, bias, swiglu=True)

    def dequantize(self, prepared: object, dtype: torch.dtype) -> torch.Tensor:
        assert isinstance(prepared, SplitQ4)
        return dequantize_split(prepared, dtype)

    def embed_rows(self, prepared: object, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Rows of the matrix as an embedding table: no second copy of the table is kept."""
        assert isinstance(prepared, SplitQ4)
        return dequantize_split(prepared, dtype, ids)

    @staticmethod
    def _apply(x: torch.Tensor, prepared: object, bias: torch.Tensor | None, *, swiglu: bool) -> torch.Tensor:
        assert isinstance(prepared, SplitQ4)
        lead = x.shape[:-1]
        y = q4_0_linear(x.reshape(-1, x.shape[-1]), prepared, bias, swiglu=swiglu)
        return y.reshape(*lead, prepared.out_features)
