"""Rotary tables, and a captured step's positions, cache slots and rotations in one kernel.

`rope_tables` is the plain torch form (any device). Inside a streaming step's CUDA graph a
KV cache's `begin` then `rope_tables` were six small torch kernels (positions from the device
counter, the counter advanced, slots, the slots' positions recorded, angles, cos/sin), ~1.8 us
each on the H200; `advance_and_rotate` does all of it in one Triton program (CUDA; CI runs it in
Triton's interpreter), with the same arithmetic: the position converted to fp32, times the
frequency, then libdevice's cos and sin (the functions torch.polar calls).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import torch

from voxtral_desktop.kernels import fused, pdl

# Triton's interpreter runs a kernel's source with its module's globals: set by `_kernel`.
fmath: Any = None

# (head_dim, theta, device) -> (the frequencies f_k [head_dim / 2], a 0-d one): made once, so a
# step's graph does not make them again every call (four kernels each time). Kept for the
# process: captured graphs read them.
_FREQUENCIES: dict[tuple[int, float, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}


def frequencies(head_dim: int, theta: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    key = (head_dim, theta, device)
    if key not in _FREQUENCIES:
        steps = torch.arange(0, head_dim, 2, dtype=torch.float32, device=device)
        inv_freq = 1.0 / (theta ** (steps / head_dim))
        _FREQUENCIES[key] = inv_freq, torch.ones((), dtype=torch.float32, device=device)
    return _FREQUENCIES[key]


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float) -> torch.Tensor:
    """Unit complex rotations e^(i p f_k) of shape [T, head_dim // 2] for integer positions [T]
    (the angle p f_k in fp32: the position converted, then multiplied)."""
    inv_freq, one = frequencies(head_dim, theta, positions.device)
    return torch.polar(one, positions[:, None] * inv_freq[None, :])  # [T, D/2]


@cache
def _kernel() -> Any:
    global fmath
    import triton
    import triton.language as tl

    fmath = fused.math_functions()
    gdc_wait, gdc_launch_dependents = pdl.triton_gdc()

    @triton.jit
    def advance_kernel(
        counter_ptr, positions_ptr, slots_ptr, slot_pos_ptr, inv_freq_ptr, rot_ptr, T, CAPACITY,
        TB: tl.constexpr, HALF: tl.constexpr, PDL: tl.constexpr,
    ):  # fmt: skip
        if PDL:  # wait for the previous kernel, then let the next one launch (kernels/pdl.py)
            gdc_wait()
            gdc_launch_dependents()
        t = tl.arange(0, TB)
        live = t < T
        first = tl.load(counter_ptr)
        pos = first + t
        slot = pos % CAPACITY
        tl.store(positions_ptr + t, pos, mask=live)
        tl.store(slots_ptr + t, slot, mask=live)
        tl.store(slot_pos_ptr + slot, pos, mask=live)
        tl.store(counter_ptr, first + T)  # one program: the counter is read above, first
        i = tl.arange(0, HALF)
        angle = pos.to(tl.float32)[:, None] * tl.load(inv_freq_ptr + i)[None, :]
        at = rot_ptr + (t[:, None] * HALF + i[None, :]) * 2
        tl.store(at, fmath.cos(angle), mask=live[:, None])
        tl.store(at + 1, fmath.sin(angle), mask=live[:, None])

    return advance_kernel


def advance_applies(counter: torch.Tensor) -> bool:
    return fused.enabled(counter)


def advance_and_rotate(
    counter: torch.Tensor,
    slot_pos: torch.Tensor,
    n_new: int,
    head_dim: int,
    theta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For a cache whose next position is the device integer `counter` (int64, 0-d) and whose
    ring of `slot_pos.shape[0]` slots records each slot's position in `slot_pos`: the next
    `n_new` positions [T] and their slots [T] (int64), `slot_pos` updated at those slots and
    `counter` advanced, and their rotations complex64 [T, head_dim / 2], as `rope_tables`."""
    device = counter.device
    inv_freq, _ = frequencies(head_dim, theta, device)
    positions = torch.empty(n_new, dtype=torch.long, device=device)
    slots = torch.empty(n_new, dtype=torch.long, device=device)
    rot = torch.empty(n_new, head_dim // 2, 2, dtype=torch.float32, device=device)
    _kernel()[(1,)](
        counter, positions, slots, slot_pos, inv_freq, rot, n_new, slot_pos.shape[0],
        TB=max(2, fused._next_pow2(n_new)), HALF=head_dim // 2, **pdl.triton_options(device),
    )  # fmt: skip
    return positions, slots, torch.view_as_complex(rot)
