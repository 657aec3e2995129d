"""Which Q4_0 matmul a device uses. Decided once, at load time.

- `reference`: dequantise on the fly in the activation dtype (exact, slow; the oracle).
- `int4`: PyTorch's tinygemm int4 kernels with bf16 activations (CPU; CUDA on SM80+): `auto`'s
  choice on the CPU, and on CUDA where `mma` cannot be compiled.
- `triton`: a Triton GEMV over the GGUF codes with fp32 accumulation (CUDA; exact like the
  reference, ~10 % slower a step than tinygemm on the H100 and 2x slower on batches, but the
  Q4_0 bytes themselves: 3.0 GiB for the model and a live session): `auto`'s choice on GPUs
  with less than 6 GiB where `mma` cannot be compiled.
- `mma`: `q4_mma.cu`, a tensor-core Q4_0 kernel compiled at run time by NVRTC (CUDA SM80+; the
  Q4_0 bytes repacked for 16-byte loads, 0.5625 B a weight; bias and SwiGLU in the kernel):
  `auto`'s choice on CUDA since the sixth session (on the H100 faster than tinygemm on every
  shape of the model from 1 to 256 rows; a live step 3.2 instead of 4.2 ms, 2.35 instead of
  2.86 GiB for the model: bench/RESULTS.md); `auto` falls back to the others where NVRTC fails.
- `dense`: dequantise every matrix once at load into the compute dtype and use plain matmuls
  (MPS, pre-Ampere CUDA, and large batches where int4 kernels lose to cuBLAS).
"""

from __future__ import annotations

import logging

import torch

from voxtral_desktop.errors import ConfigError
from voxtral_desktop.kernels.int4pack import CpuInt4Backend, CudaInt4Backend
from voxtral_desktop.kernels.linear import REFERENCE, Q4Backend

log = logging.getLogger(__name__)

KERNELS = ("auto", "reference", "int4", "triton", "mma", "dense")
KV_CACHES = ("auto", "int8", "full")


def choose_kv_int8(device: torch.device, dtype: torch.dtype, kv_cache: str = "auto") -> bool:
    """Whether the KV caches hold int8 codes with per-vector scales (kernels/kv_int8.py) rather
    than the compute dtype. `auto`: int8 on CUDA in half precision, where the fused attention
    reads the codes as they are (half the cache memory and the bytes read per step); the
    compute dtype elsewhere (fp32 stays exact; the CPU/MPS paths would dequantise every step)."""
    if kv_cache not in KV_CACHES:
        raise ConfigError(f"unknown KV cache {kv_cache!r}: choose one of {', '.join(KV_CACHES)}")
    if kv_cache != "auto":
        return kv_cache == "int8"
    return device.type == "cuda" and dtype.itemsize == 2


SMALL_GPU_BYTES = 6 * 1024**3  # below this, `auto` trades ~10 % of step time for 0.5 GB


def _small_gpu(device: torch.device) -> bool:
    return torch.cuda.get_device_properties(device).total_memory < SMALL_GPU_BYTES


def kv_cache_name(kv_int8: bool, dtype: torch.dtype) -> str:
    """How the KV caches chosen by `choose_kv_int8` store entries, for reports: int8, bfloat16, ..."""
    return "int8" if kv_int8 else str(dtype).removeprefix("torch.")


def choose_q4_backend(device: torch.device, kernel: str = "auto") -> Q4Backend | None:
    """The backend for Q4_0 weights on `device`; None means "dequantise to dense at load"."""
    if kernel not in KERNELS:
        raise ConfigError(f"unknown kernel {kernel!r}: choose one of {', '.join(KERNELS)}")
    if kernel == "reference":
        return REFERENCE
    if kernel == "dense":
        return None
    if kernel == "triton":
        from voxtral_desktop.kernels.triton_q4 import TritonQ4Backend, triton_available

        if device.type != "cuda" or not triton_available():
            raise ConfigError("the triton kernel needs a CUDA GPU and the triton package")
        return TritonQ4Backend()
    if kernel == "mma" or (kernel == "auto" and device.type == "cuda"):
        from voxtral_desktop.kernels.mma_q4 import CudaMmaQ4Backend, mma_unavailable

        why_not = mma_unavailable(device)
        if why_not is None:
            return CudaMmaQ4Backend()
        if kernel == "mma":
            raise ConfigError(f"the mma kernel cannot run here: {why_not}")
        log.info("Q4 kernel: not mma (%s)", why_not)
    if device.type == "cpu":
        return CpuInt4Backend()
    if device.type == "cuda":
        if kernel == "auto" and _small_gpu(device):
            from voxtral_desktop.kernels.triton_q4 import TritonQ4Backend, triton_available

            if triton_available():
                log.info(
                    "Q4 kernel: triton (the Q4_0 bytes as they are: 0.5 GB less than int4 on a small GPU)"
                )
                return TritonQ4Backend()
        if torch.cuda.get_device_capability(device) >= (8, 0):
            return CudaInt4Backend()
        if kernel == "int4":
            raise ConfigError("the int4 kernel needs an Ampere (SM80) or newer GPU; use --kernel dense")
        return None
    if kernel == "int4":
        raise ConfigError(f"no int4 kernel for {device.type}; use --kernel dense or reference")
    return None
