"""Q4_0 on tensor cores for a few activation rows (CUDA SM80+): the streaming step's matmuls.

`q4_mma.cu` is CUDA C++ compiled at run time by NVRTC (`nvrtc_cubin`: the library ships with
PyTorch's CUDA wheels, so no compiler, CUDA toolkit or build step on the user's machine) and
loaded through `torch.cuda._utils`. It
reads the Q4_0 codes repacked losslessly by `pack` into the order of the A operand of
`mma.m16n8k16` (16-byte loads, one warp per 16-row tile and 64-column step; the columns within
a step placed so that each lane's activations are two 16-byte loads), turns nibbles into
exact bf16 weights q - 8 with one LOP3 and one bf16x2 FMA per pair, multiplies on tensor cores
with fp32 accumulation per 32-column group and applies the f16 scale in fp32. Bytes per weight:
0.5625, the Q4_0 size (tinygemm needs 0.625 with its bf16 scales). Up to 64 activation rows per
launch; more run as several launches (prompts); file batches use `dense_weights`.

`pack`/`unpack` and `dequantize` are plain torch and run on the CPU, where the tests check the
layout against `dequantize_q4_0` and against the PTX fragment tables (tests/test_mma_q4.py); the
kernel itself is checked against `q4_linear_reference` on the GPU (tests/test_gpu.py).
"""

from __future__ import annotations

import ctypes
import logging
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from voxtral_desktop.kernels import pdl, tokens
from voxtral_desktop.kernels.int4pack import q4_0_codes
from voxtral_desktop.kernels.norm_link import NormedRows
from voxtral_desktop.kernels.q4 import Q4Weight

log = logging.getLogger(__name__)

TILE_ROWS = 16  # output rows per tile: the M dimension of mma.m16n8k16
STEP_COLS = 64  # input columns per lane load: 4 k-steps of 16 (two Q4_0 groups)
ROWS_PER_LAUNCH = 64  # activation rows: 8 n-tiles of 8
SOURCE = Path(__file__).with_name("q4_mma.cu")


@dataclass(frozen=True)
class MmaQ4:
    codes: torch.Tensor  # int32 [N/16, K/64, 32 lanes, 4 k-steps]: 8 nibbles a word
    scales: torch.Tensor  # f16 [N/16, K/64, 8, 4]: (g, g0), (g, g1), (g + 8, g0), (g + 8, g1)
    out_features: int
    in_features: int


def _to_int32(words: torch.Tensor) -> torch.Tensor:
    """int64 values in [0, 2^32) -> the int32 with the same bits."""
    return (words - ((words >> 31) & 1) * (1 << 32)).to(torch.int32)


def pack(
    codes: torch.Tensor, scales: torch.Tensor, tiles_at_once: int = 512
) -> tuple[torch.Tensor, torch.Tensor]:
    """codes uint8 [N, K] (0..15, natural order), scales f16 [N, K/32] -> `MmaQ4` tensors."""
    n, k = codes.shape
    if not mma_supports((n, k)):  # the kernel reads rows of K/2 words in 16-byte runs
        raise ValueError(f"the mma layout needs N % {TILE_ROWS} == 0 and K % {STEP_COLS} == 0, not {n} x {k}")
    t, it = n // TILE_ROWS, k // STEP_COLS
    shifts = 4 * torch.arange(8, dtype=torch.int64, device=codes.device)
    words = torch.empty(t, it, 32, 4, dtype=torch.int32, device=codes.device)
    for a in range(0, t, tiles_at_once):
        b = min(t, a + tiles_at_once)
        # Column 32 jh + 8 t + 4 jl + 2 k8 + k1 of an iteration goes to k-step j = 2 jh + jl:
        # [tile, h, g, iter, jh, t, jl, k8, k1] -> [tile, iter, g, t, jh, jl, k1, k8, h], where
        # nibble p = 4 k1 + 2 k8 + h of the word (q4_mma.cu's layout).
        q = codes[a * TILE_ROWS : b * TILE_ROWS].reshape(b - a, 2, 8, it, 2, 4, 2, 2, 2)
        q = q.permute(0, 3, 2, 5, 4, 6, 8, 7, 1).reshape(b - a, it, 32, 4, 8).to(torch.int64)
        words[a:b] = _to_int32((q << shifts).sum(-1))
    s = scales.reshape(t, 2, 8, it, 2).permute(0, 3, 2, 1, 4).reshape(t, it, 8, 4).contiguous()
    return words, s


def _nibbles(words: torch.Tensor) -> torch.Tensor:
    """int32 [...] -> uint8 [..., 8] (nibble p = bits 4p..4p+3)."""
    shifts = 4 * torch.arange(8, dtype=torch.int64, device=words.device)
    return ((words.to(torch.int64)[..., None] >> shifts) & 15).to(torch.uint8)


def unpack(prepared: MmaQ4) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of `pack`: (codes uint8 [N, K], scales f16 [N, K/32])."""
    n, k = prepared.out_features, prepared.in_features
    t, it = n // TILE_ROWS, k // STEP_COLS
    q = _nibbles(prepared.codes).reshape(t, it, 8, 4, 2, 2, 2, 2, 2)  # tile, iter, g, t, jh, jl, k1, k8, h
    codes = q.permute(0, 8, 2, 1, 4, 3, 5, 7, 6).reshape(n, k)  # tile, h, g, iter, jh, t, jl, k8, k1
    scales = prepared.scales.reshape(t, it, 8, 2, 2).permute(0, 3, 2, 1, 4).reshape(n, k // 32)
    return codes, scales


def _dequantize(codes: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(q - 8) * d in fp32 per 32-column group, then `dtype` (as `dequantize_q4_0`)."""
    w = (codes.to(torch.float32) - 8).unflatten(-1, (-1, 32)) * scales.to(torch.float32)[..., None]
    return w.flatten(-2).to(dtype)


def mma_supports(shape: tuple[int, int]) -> bool:
    n, k = shape
    return n % TILE_ROWS == 0 and k % STEP_COLS == 0


def choose_warps(tiles: int, iters: int, nt: int) -> int:
    """Warps per tile, from the H100 sweep over the model's shapes (bench/tune_mma.py,
    bench/h100_session6/tune_mma.log): 16 for matrices of few tiles (many warps per tile keep
    enough loads in flight), fewer as the tiles alone fill the GPU; no more warps than the
    tile's iterations, and the shared-memory sum of partial tiles within 32 KB (warps x n-tiles
    <= 64)."""
    warps = 16 if tiles < 256 else 8 if tiles < 1024 else 4 if tiles < 4096 else 8
    while warps > 4 and (warps > iters or warps * nt > 64):
        warps //= 2
    return warps


UNROLL = 2  # iterations loaded before any is used: 2 beat 4 and 8 on most shapes (same sweep)
# unroll 0 ("staged"): every weight of a warp copied into shared memory by cp.async before the
# wait for the previous kernel, instead of `unroll` iterations into registers, and the activation
# rows after it (q4_mma.cu)
STAGE_BYTES = 512 + 64  # shared memory a staged iteration takes: its codes and scales

# (out_features, in_features, n-tiles, gated) -> (warps, unroll), per GPU name: the streaming
# step's matrices, chosen inside the step's CUDA graph (bench/tune_step_mma.py), where a
# variant's first loads overlap the kernel before it. On the H200 these made the step's replay
# 2,319 -> 2,269 us (bench/h200_session18/tune_step_mma.log); the shapes not listed there were
# within 2 us. Staged weights and rows (unroll 0) won for the encoder's wo and w2, 44 us
# together (bench/h200_session21/xs/; the other matrices lost 7-90 us).
Variant = tuple[int, int, int, bool]
TUNED: dict[str, dict[Variant, tuple[int, int]]] = {
    "NVIDIA H200": {
        (3072, 9216, 1, False): (16, 3),  # decoder w2
        (6144, 3072, 1, False): (16, 1),  # decoder wqkv
        (3072, 4096, 1, False): (16, 1),  # decoder wo
        (131072, 3072, 1, False): (4, 2),  # the head
        (10240, 1280, 1, True): (8, 1),  # encoder w1/w3
        (6144, 1280, 1, False): (16, 1),  # encoder wqkv
        (1280, 2048, 1, False): (16, 0),  # encoder wo: staged
        (1280, 5120, 1, False): (16, 0),  # encoder w2: staged
    },
}
# The same for a sweep (bench/tune_step_mma.py sets it and captures the step again); empty in
# the app, and it wins over `TUNED`.
OVERRIDES: dict[Variant, tuple[int, int]] = {}


@cache
def _tuned_for(device_index: int) -> dict[Variant, tuple[int, int]]:
    return TUNED.get(torch.cuda.get_device_name(device_index), {})


def choose_variant(
    n: int, k: int, nt: int, gated: bool = False, device_index: int | None = None
) -> tuple[int, int]:
    """(warps, unroll) for an N x K matrix (a gated gate/up pair or not) and `nt` n-tiles:
    `OVERRIDES`, else the GPU's `TUNED` entry (`device_index`), else `choose_warps` and
    `UNROLL`."""
    picked = OVERRIDES.get((n, k, nt, gated))
    if picked is None and device_index is not None:
        picked = _tuned_for(device_index).get((n, k, nt, gated))
    if picked is not None:
        return picked
    return choose_warps(n // TILE_ROWS, k // STEP_COLS, nt), UNROLL


# codes, scales, x, bias, bias_kind, y, M, N, K, then the norm links' res, res_out, gamma,
# part_out, part_in, eps (p: pointer, i: int, f: float)
SIGNATURE = "ppppippiipppppf"
NORM_OUT, NORM_IN = 1, 2  # q4_mma.cu's NORM: the matmul ends a residual branch / starts after a norm
NORM_IN_MAX_PARTIALS = 192  # q4_mma.cu's PMAX


def _variant_name(warps: int, nt: int, unroll: int, gated: bool, norm: int = 0) -> str:
    return f"q4_mma_w{warps}_n{nt}_u{unroll}" + ("_gated" if gated else "") + (f"_norm{norm}" if norm else "")


def _source(variants) -> str:
    """q4_mma.cu plus one extern "C" kernel per (warps, n-tiles, unroll, gated[, norm])."""
    params = (
        "const uint4* codes, const uint2* scales, const u32* x, const void* bias, int bias_kind,"
        " u16* y, int M, int N, int K, const u16* res, u16* res_out, const u16* gamma, float* part_out,"
        " const float* part_in, float eps"
    )
    args = "codes, scales, x, bias, bias_kind, y, M, N, K, res, res_out, gamma, part_out, part_in, eps"
    wrappers = []
    for w, nt, u, gt, *rest in variants:
        norm = rest[0] if rest else 0
        name = _variant_name(w, nt, u, gt, norm)
        wrappers.append(
            f'extern "C" __global__ void __launch_bounds__({w * 32}) {name}({params})'
            f" {{ q4_mma<{w}, {nt}, {u}, {str(gt).lower()}, {norm}>({args}); }}"
        )
    return SOURCE.read_text(encoding="utf-8") + "\n" + "\n".join(wrappers) + "\n"


def _current_stream(device_index: int) -> int:
    """The device's current CUDA stream handle (PyTorch's private fast accessor, as Triton
    uses it)."""
    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    return raw(device_index) if raw else torch.cuda.current_stream(device_index).cuda_stream


CUDA_ERROR_INVALID_CONTEXT = 201
CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES = 1
CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8
CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97


@cache
def _shared_per_block(device_index: int) -> int:
    """The most shared memory a block may have on the device (opted in), 48 KB if unknown."""
    driver = torch.cuda._utils._get_gpu_runtime_library()
    value = ctypes.c_int()
    if driver.cuDeviceGetAttribute(
        ctypes.byref(value), CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, device_index
    ):
        return 48 * 1024
    return value.value


def staged_shared_bytes(warps: int, k: int, rows: int) -> int:
    """Dynamic shared memory of a staged variant (unroll 0): each warp's share of a tile's
    iterations, then the activation rows (bf16)."""
    return warps * -(-(k // STEP_COLS) // warps) * STAGE_BYTES + 2 * rows * k


def _make_primary_context_current(device_index: int) -> None:
    """The driver API launches in the thread's current context, which PyTorch's runtime calls
    set up lazily: a fresh thread whose tensors all come from the caching allocator may have
    none. Make the device's primary context (the one PyTorch uses) current."""
    driver = torch.cuda._utils._get_gpu_runtime_library()
    device, ctx = ctypes.c_int(), ctypes.c_void_p()
    for rc in (
        driver.cuDeviceGet(ctypes.byref(device), device_index),
        driver.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), device),
        driver.cuCtxSetCurrent(ctx),
    ):
        if rc != 0:
            raise RuntimeError(f"could not make GPU {device_index}'s CUDA context current (CUDA error {rc})")
    # The retained reference is kept: released, the context could be torn down while current.


class _Launcher:
    """cuLaunchKernel through ctypes with the argument slots allocated once (the driver copies
    the values at launch): a few microseconds a call, which eager paths (prompts, encoder
    chunks of files) pay once per matmul. `programmatic`: cuLaunchKernelEx with programmatic
    stream serialisation (kernels/pdl.py), so the kernel's first weight loads overlap the
    previous kernel's end."""

    def __init__(self, kernel) -> None:
        import threading

        self.kernel = kernel  # holds the loaded module
        self.func = kernel.func
        driver = torch.cuda._utils._get_gpu_runtime_library()
        self.launch = driver.cuLaunchKernel
        self.launch_ex = getattr(driver, "cuLaunchKernelEx", None)  # CUDA 12+
        self.set_attribute = driver.cuFuncSetAttribute
        self.config, self.attribute = pdl.programmatic_config()  # the config points at the attribute
        slot_types: dict[str, Any] = {"p": ctypes.c_void_p, "i": ctypes.c_int, "f": ctypes.c_float}
        self.slots = [slot_types[kind]() for kind in SIGNATURE]
        self.argv = (ctypes.c_void_p * len(self.slots))(*[ctypes.addressof(a) for a in self.slots])
        self.stream = ctypes.c_void_p()
        self.lock = threading.Lock()
        self.allowed = 0  # dynamic shared memory bytes allowed so far (cuFuncSetAttribute)
        static = ctypes.c_int()
        rc = driver.cuFuncGetAttribute(ctypes.byref(static), CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, self.func)
        self.static_shared = static.value if rc == 0 else 48 * 1024

    def _allow_shared(self, shared: int) -> int:
        """Dynamic shared memory that takes a block past 48 KB must be allowed per kernel first
        (set once to the largest size launched)."""
        if shared <= self.allowed:
            return 0
        rc = self.set_attribute(self.func, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, shared)
        if rc == 0:
            self.allowed = shared
        return rc

    def _launch(self, grid: int, threads: int, programmatic: bool, shared: int) -> int:
        rc = self._allow_shared(shared)
        if rc != 0:
            return rc
        if programmatic and self.launch_ex is not None:
            self.config.grid[0], self.config.block[0], self.config.stream = grid, threads, self.stream.value
            self.config.shared_bytes = shared
            rc = self.launch_ex(ctypes.byref(self.config), self.func, self.argv, None)
            if rc in (0, CUDA_ERROR_INVALID_CONTEXT):
                return rc
            # A driver that refuses the attribute: launch as before, and from now on.
            log.warning("cuLaunchKernelEx failed (CUDA error %d); launching without PDL", rc)
            self.launch_ex = None
        return self.launch(self.func, grid, 1, 1, threads, 1, 1, shared, self.stream, self.argv, None)

    def __call__(
        self,
        grid: int,
        threads: int,
        args: tuple[float, ...],
        device_index: int,
        programmatic: bool = False,
        shared: int = 0,
    ) -> None:
        """`shared`: bytes of dynamic shared memory (NORM_IN's partial sums, staged weights)."""
        with self.lock:
            for slot, value in zip(self.slots, args, strict=True):
                slot.value = value
            self.stream.value = _current_stream(device_index)
            rc = self._launch(grid, threads, programmatic, shared)
            if rc == CUDA_ERROR_INVALID_CONTEXT:  # a thread that has not made a CUDA context current
                _make_primary_context_current(device_index)
                rc = self._launch(grid, threads, programmatic, shared)
        if rc != 0:
            raise RuntimeError(f"cuLaunchKernel failed for the Q4 mma kernel (CUDA error {rc})")


def _nvrtc_library():
    """libnvrtc, which PyTorch's CUDA wheels ship and load (torch's own finder, else by name)."""
    finder = getattr(torch.cuda._utils, "_get_gpu_rtc_library", None)
    if finder is not None:
        return finder()
    major = str(torch.version.cuda).split(".")[0]
    minor = "2" if major == "11" else "0"  # CUDA 11's NVRTC is named for 11.2
    if sys.platform == "win32":
        names = [f"nvrtc64_{major}{minor}_0.dll"]
    else:
        names = [f"libnvrtc.so.{major}" + (".2" if major == "11" else ""), "libnvrtc.so"]
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise OSError(f"no NVRTC library found (tried {', '.join(names)})")


def nvrtc_cubin(source: str, arch: str, library=None) -> bytes:
    """CUDA C++ without #includes -> a cubin for `arch` (e.g. "sm_90"), through NVRTC's C API.

    Not `torch.cuda._utils._nvrtc_compile`: that one adds the CUDA toolkit's include folder and
    raises without CUDA_HOME, nvcc or /usr/local/cuda, which a pip-installed PyTorch does not
    need and most users do not have; q4_mma.cu includes nothing, so the architecture is the
    only option it needs."""
    lib = library if library is not None else _nvrtc_library()

    lib.nvrtcGetErrorString.restype = ctypes.c_char_p  # const char* nvrtcGetErrorString(nvrtcResult)

    def check(rc: int, what: str) -> None:
        if rc != 0:
            text = lib.nvrtcGetErrorString(rc)
            raise RuntimeError(f"NVRTC {what}: {(text or b'error %d' % rc).decode()}")

    prog = ctypes.c_void_p()
    check(lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"q4_mma.cu", 0, None, None), "create")
    try:
        options = (ctypes.c_char_p * 1)(f"--gpu-architecture={arch}".encode())
        if lib.nvrtcCompileProgram(prog, 1, options) != 0:
            size = ctypes.c_size_t()
            lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetProgramLog(prog, log)
            raise RuntimeError(f"NVRTC could not compile q4_mma.cu for {arch}:\n{log.value.decode()}")
        size = ctypes.c_size_t()
        check(lib.nvrtcGetCUBINSize(prog, ctypes.byref(size)), "cubin size")
        cubin = ctypes.create_string_buffer(size.value)
        check(lib.nvrtcGetCUBIN(prog, cubin), "cubin")
        return cubin.raw
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def _compile(variants, device_index: int) -> dict[tuple, _Launcher]:
    from torch.cuda._utils import _cuda_load_module

    with torch.cuda.device(device_index):
        major, minor = torch.cuda.get_device_capability(device_index)
        names = [_variant_name(*v) for v in variants]
        module = _cuda_load_module(nvrtc_cubin(_source(variants), f"sm_{major}{minor}"), names)
        kernels = module if isinstance(module, dict) else {name: getattr(module, name) for name in names}
        return {v: _Launcher(kernels[name]) for v, name in zip(variants, names, strict=True)}


@cache
def _kernel(warps: int, nt: int, unroll: int, gated: bool, device_index: int, norm: int = 0) -> _Launcher:
    """One variant, compiled on first use (0.2-1 s on the H100's host; all 22 at once took 12 s,
    so a process compiles only the few its shapes and row counts need, mostly while the
    streaming session captures its CUDA graphs)."""
    v = (warps, nt, unroll, gated, norm) if norm else (warps, nt, unroll, gated)
    return _compile((v,), device_index)[v]


def mma_unavailable(device: torch.device) -> str | None:
    """Why the kernel cannot run on `device` (None: it can). Compiles one variant, so a PyTorch
    without NVRTC or an old GPU is found at load, not at the first step."""
    if device.type != "cuda":
        return "it needs a CUDA GPU"
    if torch.cuda.get_device_capability(device) < (8, 0):
        return "it needs an Ampere (SM80) or newer GPU"
    try:
        from torch.cuda._utils import _cuda_load_module  # noqa: F401
    except ImportError:
        return f"PyTorch {torch.__version__} has no CUDA module loader (torch.cuda._utils._cuda_load_module)"
    try:
        index = device.index if device.index is not None else torch.cuda.current_device()
        _kernel(choose_warps(1, 16, 1), 1, UNROLL, False, index)
    except Exception as e:  # NVRTC missing or failing: the caller falls back to another kernel
        return f"NVRTC could not compile it ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
    return None


def _dtype(x: torch.Tensor | NormedRows) -> torch.dtype:
    return x.scaled.dtype if isinstance(x, NormedRows) else x.dtype


def _bf16_rows(x: torch.Tensor, k: int) -> torch.Tensor:
    x2 = x.reshape(-1, k)
    if x2.dtype != torch.bfloat16:
        x2 = x2.to(torch.bfloat16)
    if not x2.is_contiguous() or x2.data_ptr() % 16:  # the kernel reads 8 bf16 at a time (16 bytes)
        x2 = x2.contiguous() if not x2.is_contiguous() else x2.clone()
    return x2


def mma_linear(
    x: torch.Tensor | NormedRows,
    prepared: MmaQ4,
    bias: torch.Tensor | None = None,
    warps: int | None = None,
    unroll: int | None = None,
    gated: bool = False,
) -> torch.Tensor:
    """x [..., K] -> bf16 x W^T + b [..., N] (rounded once, from fp32); x is taken as bf16.
    gated: W is a gate/up pair packed by `interleave_gate_up`; the output is silu(gate) * up
    [..., N/2]. `warps`, `unroll`: the kernel variant's, each replacing `choose_variant`'s own
    (given alone, the other stays the chosen one). `NormedRows`: rms_norm(x) * gamma W^T + b,
    the norm's scale applied to the sums."""
    n = prepared.out_features
    rows = x.scaled if isinstance(x, NormedRows) else x
    y = torch.empty(*rows.shape[:-1], n // 2 if gated else n, dtype=torch.bfloat16, device=rows.device)
    _launch(x, prepared, bias, y, warps, unroll, gated)
    return y


def mma_linear_to_norm(
    x: torch.Tensor,
    prepared: MmaQ4,
    bias: torch.Tensor | None,
    residual: torch.Tensor,
    gamma: torch.Tensor,
    eps: float,
) -> tuple[torch.Tensor, NormedRows]:
    """(residual + x W^T + b, the same's RMS norm with weight `gamma` [N] for the next matmul), one
    kernel: the sum rounded to bf16 like `residual + linear(x)`, then `NormedRows` of it."""
    n = prepared.out_features
    lead = residual.shape[:-1]
    assert residual.shape[-1] == n and gamma.shape == (n,)
    res = _bf16_rows(residual, n)
    new_residual = torch.empty_like(res)
    scaled = torch.empty_like(res)
    sums = torch.empty(res.shape[0], n // TILE_ROWS, dtype=torch.float32, device=res.device)
    link = (res, new_residual, _bf16_rows(gamma, n), sums)
    _launch(x, prepared, bias, scaled, None, None, False, link)
    return new_residual.reshape(*lead, n), NormedRows(scaled.reshape(*lead, n), sums, eps)


def _launch(
    x: torch.Tensor | NormedRows,
    prepared: MmaQ4,
    bias: torch.Tensor | None,
    y: torch.Tensor,
    warps: int | None,
    unroll: int | None,
    gated: bool,
    norm_out: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> None:
    n, k = prepared.out_features, prepared.in_features
    normed = x if isinstance(x, NormedRows) else None
    x2 = _bf16_rows(x.scaled if isinstance(x, NormedRows) else x, k)
    m_all = x2.shape[0]
    n_out = n // 2 if gated else n
    if bias is None:
        bias_arg, bias_kind = y, 0  # any pointer: not read
    else:
        bias_arg = bias.contiguous()
        bias_kind = 1 if bias_arg.dtype == torch.bfloat16 else 2
        if bias_kind == 2 and bias_arg.dtype != torch.float32:
            bias_arg = bias_arg.float()
    norm, eps = 0, 0.0
    res = res_out = gamma = part_out = part_in = 0
    if norm_out is not None:
        norm = NORM_OUT
        res, res_out, gamma, part_out = (t.data_ptr() for t in norm_out)
    elif normed is not None:
        assert normed.sums.shape == (m_all, k // TILE_ROWS) and normed.sums.is_contiguous()
        norm, eps, part_in = NORM_IN, normed.eps, normed.sums.data_ptr()
    tiles = n // TILE_ROWS
    device_index = x2.device.index if x2.device.index is not None else torch.cuda.current_device()
    codes, scales, xp, yp = prepared.codes.data_ptr(), prepared.scales.data_ptr(), x2.data_ptr(), y.data_ptr()
    programmatic = pdl.enabled(x2.device)
    for m0 in range(0, m_all, ROWS_PER_LAUNCH):
        m = min(ROWS_PER_LAUNCH, m_all - m0)
        nt = 1 << max(0, (m - 1) // 8).bit_length()  # 1, 2, 4 or 8 n-tiles of 8 rows
        w, u = choose_variant(n, k, nt, gated, device_index)
        w, u = warps or w, u if unroll is None else unroll
        # NORM_IN copies a launch's partial sums to shared memory where they fit (q4_mma.cu's `early`)
        early = norm == NORM_IN and nt == 1 and k // TILE_ROWS <= NORM_IN_MAX_PARTIALS
        shared = 4 * m * (k // TILE_ROWS) if early else 0
        launch = _kernel(w, nt, u, gated, device_index, norm)
        if u == 0:
            staged = shared + staged_shared_bytes(w, k, m)
            if launch.static_shared + staged <= _shared_per_block(device_index):
                shared = staged
            else:  # more than this GPU's shared memory: the weights in registers
                launch = _kernel(w, nt, UNROLL, gated, device_index, norm)
        row = 2 * m0 * n  # bytes to this launch's first row of the [M, N] bf16 norm tensors
        args = (
            codes, scales, xp + 2 * m0 * k, bias_arg.data_ptr(), bias_kind, yp + 2 * m0 * n_out, m, n, k,
            res and res + row, res_out and res_out + row, gamma,
            part_out and part_out + 4 * m0 * tiles, part_in and part_in + 4 * m0 * (k // TILE_ROWS), eps,
        )  # fmt: skip
        if device_index == torch.cuda.current_device():
            launch(tiles, 32 * w, args, device_index, programmatic, shared)
        else:  # the driver launches in the current context: make it the tensors' device's
            with torch.cuda.device(device_index):
                launch(tiles, 32 * w, args, device_index, programmatic, shared)


class CudaMmaQ4Backend:
    """`q4_mma.cu` on CUDA SM80+ (bias added in the kernel, in fp32)."""

    name = "cuda-mma"
    separate_bias = False
    gates_swiglu = True  # `linear_gated` takes a gate/up pair packed by `interleave_gate_up`

    @staticmethod
    def supports(weight: Q4Weight) -> bool:
        return mma_supports(weight.shape)

    def prepare(self, weight: Q4Weight, device: torch.device) -> MmaQ4:
        codes, scales = q4_0_codes(weight.to(device))
        words, s = pack(codes, scales)
        return MmaQ4(words, s, *weight.shape)

    def linear(
        self, x: torch.Tensor | NormedRows, prepared: object, bias: torch.Tensor | None
    ) -> torch.Tensor:
        assert isinstance(prepared, MmaQ4)
        return mma_linear(x, prepared, bias).to(_dtype(x))

    def linear_gated(
        self, x: torch.Tensor | NormedRows, prepared: object, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """silu(gate) * up of an interleaved gate/up pair, in the matmul's epilogue."""
        assert isinstance(prepared, MmaQ4)
        return mma_linear(x, prepared, bias, gated=True).to(_dtype(x))

    def linear_to_norm(
        self,
        x: torch.Tensor,
        prepared: object,
        bias: torch.Tensor | None,
        residual: torch.Tensor,
        gamma: torch.Tensor,
        eps: float,
    ) -> tuple[torch.Tensor, NormedRows]:
        """(residual + linear(x), its RMS norm for the next matmul): kernels/norm_link.py."""
        assert isinstance(prepared, MmaQ4)
        new_residual, rows = mma_linear_to_norm(x, prepared, bias, residual, gamma, eps)
        return new_residual.to(residual.dtype), rows

    def dequantize(self, prepared: object, dtype: torch.dtype) -> torch.Tensor:
        """The dense matrix (exact), 256 tiles at a time so the unpacking's int64 temporaries
        stay near 100 MB."""
        assert isinstance(prepared, MmaQ4)
        n, k = prepared.out_features, prepared.in_features
        out = torch.empty(n, k, dtype=dtype, device=prepared.codes.device)
        for a in range(0, n // TILE_ROWS, 256):
            codes, scales = prepared.codes[a : a + 256], prepared.scales[a : a + 256]
            rows = codes.shape[0] * TILE_ROWS
            part = unpack(MmaQ4(codes, scales, rows, k))
            out[a * TILE_ROWS : a * TILE_ROWS + rows] = _dequantize(*part, dtype)
        return out

    def embed_rows(self, prepared: object, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Rows `ids` of the matrix from the packed layout (the tied table is stored once): one
        Triton kernel on CUDA (kernels/tokens.py), else `embed_rows`."""
        assert isinstance(prepared, MmaQ4)
        if tokens.embed_applies(ids):
            return tokens.embed_q4_rows(prepared.codes, prepared.scales, prepared.in_features, ids, dtype)
        return embed_rows(prepared, ids, dtype)

    def embed_rows_plus(self, prepared: object, ids: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
        """embed_rows(ids) + add [..., K] (in add's dtype), the add in the same kernel on CUDA."""
        assert isinstance(prepared, MmaQ4)
        if tokens.embed_applies(ids):
            k = prepared.in_features
            return tokens.embed_q4_rows(prepared.codes, prepared.scales, k, ids, add.dtype, add)
        return embed_rows(prepared, ids, add.dtype) + add


def embed_rows(prepared: MmaQ4, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[...] int64 -> [..., K]: rows of the dequantised matrix, read from the packed layout."""
    rows = ids.reshape(-1)
    r = rows.shape[0]
    tile, within = rows // TILE_ROWS, rows % TILE_ROWS
    g, h = within % 8, within // 8
    it = prepared.in_features // STEP_COLS
    pick = torch.arange(r, device=rows.device)
    words = prepared.codes[tile].reshape(r, it, 8, 4, 4)[pick, :, g]  # [r, iter, t, j]
    q = _nibbles(words).reshape(r, it, 4, 2, 2, 2, 2, 2)  # r, iter, t, jh, jl, k1, k8, h
    q = torch.where(h.view(r, 1, 1, 1, 1, 1, 1) == 0, q[..., 0], q[..., 1])
    codes = q.permute(0, 1, 3, 2, 4, 6, 5).reshape(r, prepared.in_features)  # r, iter, jh, t, jl, k8, k1
    s = prepared.scales[tile].reshape(r, it, 8, 2, 2)[pick, :, g]  # [r, iter, h, group]
    s = torch.where(h.view(r, 1, 1) == 0, s[:, :, 0], s[:, :, 1]).reshape(r, -1)
    return _dequantize(codes, s, dtype).reshape(*ids.shape, prepared.in_features)
