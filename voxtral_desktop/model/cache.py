"""Preallocated sliding-window KV caches.

Keys are stored after RoPE (absolute positions), so a ring buffer needs no re-rotation when it
wraps: only the mask changes. Memory is fixed at construction however long a stream runs.
"""

from __future__ import annotations

import torch


class KVCache:
    """Ring buffer of keys/values for every layer: [n_layers, batch, n_kv_heads, capacity, head_dim].

    Key j is visible to query i iff 0 <= i - j < window. A call that adds T positions needs
    capacity >= window + T - 1, so that no key a query of the same call can see is overwritten.
    """

    def __init__(
        self,
        *,
        n_layers: int,
        batch: int,
        n_kv_heads: int,
        head_dim: int,
        window: int,
        capacity: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> None:
        shape = (n_layers, batch, n_kv_heads, capacity, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.slot_pos = torch.full((capacity,), -1, dtype=torch.long, device=device)  # position held by each slot
        self.window = window
        self.capacity = capacity
        self.next_pos = 0  # absolute position of the next entry
        self._slots = torch.empty(0, dtype=torch.long, device=device)
        self._used = 0

    def reset(self) -> None:
        self.slot_pos.fill_(-1)
        self.next_pos = 0
        self._used = 0

    def begin(self, n_new: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Reserve slots for the next `n_new` positions; return (positions [T], mask [T, S_used])."""
        if n_new + self.window - 1 > self.capacity:
            raise ValueError(f"{n_new} new positions do not fit a window of {self.window} in {self.capacity} slots")
        device = self.slot_pos.device
        positions = torch.arange(self.next_pos, self.next_pos + n_new, device=device)  # [T]
        self._slots = positions % self.capacity
        self.slot_pos[self._slots] = positions
        self.next_pos += n_new
        # Slots fill in order 0..capacity-1, so before the first wrap only a prefix is in use.
        self._used = min(self.next_pos, self.capacity)
        held = self.slot_pos[: self._used]  # [S]
        distance = positions[:, None] - held[None, :]  # [T, S]
        mask = (held[None, :] >= 0) & (distance >= 0) & (distance < self.window)
        return positions, mask

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v [B, Hkv, T, D] of the positions reserved by `begin`; return the used cache."""
        self.k[layer].index_copy_(2, self._slots, k.to(self.k.dtype))
        self.v[layer].index_copy_(2, self._slots, v.to(self.v.dtype))
        return self.k[layer, :, :, : self._used], self.v[layer, :, :, : self._used]

    def copy_from(self, other: KVCache) -> None:
        """Become an exact copy of `other` (same geometry), e.g. a precomputed silent prefix."""
        self.k.copy_(other.k)
        self.v.copy_(other.v)
        self.slot_pos.copy_(other.slot_pos)
        self.next_pos = other.next_pos
        self._used = other._used
