"""The device choice: names, dtypes, and PyTorch's CPU threads for each device."""

from __future__ import annotations

import pytest
import torch

from voxtral_desktop import device as device_module
from voxtral_desktop.device import DEFAULT_HOST_THREADS, host_threads_for, resolve_device
from voxtral_desktop.errors import DeviceError


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_unknown_device_is_a_one_line_error() -> None:
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_cpu_model_gets_every_thread_back(restore_threads) -> None:
    torch.set_num_threads(1)
    choice = resolve_device("cpu")
    assert (choice.device.type, choice.dtype) == ("cpu", torch.float32)
    assert torch.get_num_threads() == DEFAULT_HOST_THREADS


def test_cuda_model_leaves_the_cpu_one_thread(restore_threads, monkeypatch) -> None:
    """A CUDA model's host runs only small per-step ops (bench/ab_host_threads.py): one thread;
    choosing the CPU afterwards (say, after running out of GPU memory) gives the threads back."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "a test GPU")
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)
    choice = resolve_device("auto")
    assert (choice.device.type, choice.dtype) == ("cuda", torch.bfloat16)
    assert torch.get_num_threads() == host_threads_for(choice.device) == 1
    resolve_device("cpu")
    assert torch.get_num_threads() == DEFAULT_HOST_THREADS


def test_mps_keeps_pytorchs_threads() -> None:
    assert host_threads_for(torch.device("mps")) == DEFAULT_HOST_THREADS
