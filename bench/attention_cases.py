"""Attention inputs at the file paths' shapes, shared by the A/B scripts (device)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from voxtral_desktop.kernels import fused
from voxtral_desktop.kernels.kv_int8 import LayerKV, quantize_kv


def chunk_case(
    B: int, H: int, Hkv: int, T: int, D: int, window: int, int8: bool
) -> Callable[[], torch.Tensor]:
    """`fused.attention` on q and a ring of window + T - 1 slots that has wrapped (slot = position
    % S), as `KVCache.begin` leaves it, with the chunk's T positions at its newest slots; keys in
    int8 or bf16."""
    dev = torch.device("cuda")
    S, first = window + T - 1, 2000
    pos = torch.arange(first, first + T, device=dev)
    held_pos = torch.arange(first + T - S, first + T, device=dev)
    held = torch.empty(S, dtype=torch.long, device=dev)
    held[held_pos % S] = held_pos
    (k8, ks), (v8, vs) = (quantize_kv(torch.randn(B, Hkv, S, D, device=dev)) for _ in range(2))
    kv = LayerKV(k8, v8, ks, vs)
    kv = kv if int8 else LayerKV(*kv.dense(torch.bfloat16))
    q = torch.randn(B, H, T, D, device=dev, dtype=torch.bfloat16)
    return lambda: fused.attention(q, kv, pos, held, window)
