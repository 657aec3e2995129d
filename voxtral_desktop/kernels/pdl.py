"""Programmatic dependent launch (PDL; CUDA, Hopper and newer): a kernel starts while the one
before it in the stream is still finishing.

A streaming step is ~600 small kernels. Each one pays for its launch and for the first DRAM
round trip of its blocks, ~2 us apiece on the H100, while the previous kernel's last blocks
drain (bench/RESULTS.md, session 6: rms_norm 2.4 us for 3,072 numbers). Launched with the
programmatic-serialization attribute, a kernel may start once every block of its predecessor has
run `griddepcontrol.launch_dependents` (or exited). It must run `griddepcontrol.wait`, which
returns when the predecessor has finished and its writes are visible, before it reads or
writes anything the predecessor may touch. Work that needs nothing from it goes before the
wait: the Q4 kernel's first weight loads. CUDA graphs keep these edges.

Every kernel launched this way waits before anything else, so the chain is ordered as before:
a kernel's predecessor has itself waited for its own. A kernel launched without the attribute
(PyTorch's) waits for its predecessor to finish, as always.

`enabled(device)` says whether this process launches the fused Triton kernels and the Q4 mma
kernel so: SM90+, Triton with the intrinsics, not turned off (`VOXTRAL_NO_PDL=1`, or `ENABLED`
for comparisons).
"""

from __future__ import annotations

import ctypes
import os
from functools import cache
from typing import Any

import torch

ENABLED = True  # a switch for comparisons (bench/profile_step.py); the env variable is the user's


@cache
def _supported(device_index: int) -> bool:
    if os.environ.get("VOXTRAL_NO_PDL", "") not in ("", "0"):
        return False
    if torch.cuda.get_device_capability(device_index) < (9, 0):
        return False  # griddepcontrol is an sm_90 instruction
    try:
        from triton.backends.nvidia.compiler import CUDAOptions
        from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait  # noqa: F401
    except ImportError:
        return False
    return "launch_pdl" in getattr(CUDAOptions, "__dataclass_fields__", {})


def enabled(device: torch.device) -> bool:
    if not ENABLED or device.type != "cuda":
        return False
    return _supported(device.index if device.index is not None else torch.cuda.current_device())


def triton_gdc() -> tuple[Any, Any]:
    """Triton's (gdc_wait, gdc_launch_dependents) for kernels built with PDL: wait for the
    previous kernel, then let the next one launch. A Triton without them gets functions that do
    nothing (`enabled` is False then, so no kernel is built with PDL)."""
    try:
        from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait

        return gdc_wait, gdc_launch_dependents
    except ImportError:
        import triton

        @triton.jit
        def nothing():
            pass

        return nothing, nothing


def triton_options(device: torch.device) -> dict[str, bool]:
    """Keyword arguments of a fused kernel's launch: its `PDL` constexpr (wait for the previous
    kernel first) and Triton's launch attribute."""
    return {"PDL": True, "launch_pdl": True} if enabled(device) else {"PDL": False}


# The driver's launch structures (cuda.h, CUDA 12+): cuLaunchKernelEx(config, function, params, extra).
CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 6


class LaunchAttribute(ctypes.Structure):
    _fields_ = [
        ("id", ctypes.c_int),
        ("pad", ctypes.c_char * 4),
        ("value", ctypes.c_uint),  # the first member of the 64-byte CUlaunchAttributeValue union
        ("value_rest", ctypes.c_char * 60),
    ]


class LaunchConfig(ctypes.Structure):
    _fields_ = [
        ("grid", ctypes.c_uint * 3),
        ("block", ctypes.c_uint * 3),
        ("shared_bytes", ctypes.c_uint),
        ("stream", ctypes.c_void_p),
        ("attrs", ctypes.POINTER(LaunchAttribute)),
        ("num_attrs", ctypes.c_uint),
    ]


assert ctypes.sizeof(LaunchAttribute) == 72 and LaunchConfig.stream.offset == 32


def programmatic_config() -> tuple[LaunchConfig, LaunchAttribute]:
    """A launch config of one attribute (programmatic stream serialisation allowed); the caller
    keeps the attribute alive with the config and sets grid, block and stream per launch."""
    attribute = LaunchAttribute(id=CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION, value=1)
    config = LaunchConfig(attrs=ctypes.pointer(attribute), num_attrs=1)
    config.grid[1] = config.grid[2] = config.block[1] = config.block[2] = 1
    return config, attribute
