"""The one place that decides the compute device and dtype.

`auto` picks CUDA, then Apple MPS, then the CPU, and says why. The dtype follows the device:
fp32 on the CPU (the exact reference path), bf16 on CUDA, fp16 on MPS (M1/M2 lack bf16). So do
PyTorch's CPU threads (`host_threads_for`): one beside a CUDA GPU, all of them for a CPU model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from voxtral_desktop.errors import DeviceError

log = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")

# PyTorch's own number of CPU threads (the machine's cores, or OMP_NUM_THREADS), taken at import
# so that a later choice of the CPU can give them back.
DEFAULT_HOST_THREADS = torch.get_num_threads()


def host_threads_for(device: torch.device) -> int:
    """PyTorch's CPU threads while a model runs on `device`.

    With the model on a CUDA GPU, the CPU runs only small ops each 80 ms step: the incremental
    log-mel of 8 frames (an STFT and a 128 x 201 x 8 matmul) and a few copies. Waking a pool of
    threads for those costs more than it saves, and it is the jitter of a live step
    (bench/RESULTS.md, tenth session): on the H200's 16-core host, back to back, the log-mel of
    80 ms took 0.43-0.65 ms (p50) with 16 threads and 0.08-0.16 ms with one, and fed steps'
    p95 went from 3.6-14.8 ms to 3.0-3.3 ms; at a microphone's pace on a 2-core machine, where
    the pool sleeps between pushes, 2 threads took 1.5-12 ms (p95 1.7-16 ms) and one 0.6-0.7 ms.
    Whole steps fed every 80 ms on the H200 took 3.9 ms (p95 4.2) with one thread and 10.8 ms
    (p95 20.1) with 16 (eleventh session). On the file paths one thread was faster for one
    stream and for 64 files, and within 6 % for segments of one file. On the CPU the model
    itself needs them all.
    MPS keeps PyTorch's default: not measured, and ops without an MPS kernel fall back to the
    CPU."""
    return 1 if device.type == "cuda" else DEFAULT_HOST_THREADS


@dataclass(frozen=True)
class DeviceChoice:
    device: torch.device
    dtype: torch.dtype
    reason: str

    def describe(self) -> str:
        return f"{self.device.type} ({str(self.dtype).removeprefix('torch.')}): {self.reason}"


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str = "auto", dtype: torch.dtype | None = None) -> DeviceChoice:
    if name not in DEVICE_CHOICES:
        raise DeviceError(f"unknown device {name!r}: choose one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            choice = DeviceChoice(
                torch.device("cuda"), torch.bfloat16, f"CUDA GPU {torch.cuda.get_device_name(0)}"
            )
        elif _mps_available():
            choice = DeviceChoice(torch.device("mps"), torch.float16, "Apple GPU (MPS); no CUDA GPU found")
        else:
            choice = DeviceChoice(torch.device("cpu"), torch.float32, "no CUDA or MPS GPU found")
    elif name == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("device 'cuda' is not available: this PyTorch build sees no CUDA GPU")
        choice = DeviceChoice(torch.device("cuda"), torch.bfloat16, "requested")
    elif name == "mps":
        if not _mps_available():
            raise DeviceError(
                "device 'mps' is not available: it needs an Apple-silicon Mac and PyTorch with MPS"
            )
        choice = DeviceChoice(torch.device("mps"), torch.float16, "requested")
    else:
        choice = DeviceChoice(torch.device("cpu"), torch.float32, "requested")
    if dtype is not None:
        choice = DeviceChoice(choice.device, dtype, choice.reason)
    if choice.device.type == "cuda" and choice.dtype == torch.float32:
        # fp32 is asked for to be exact: keep cuDNN's convolutions and cuBLAS off TF32.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    threads = host_threads_for(choice.device)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    log.info("compute device: %s; %d CPU thread(s) for PyTorch", choice.describe(), threads)
    return choice
