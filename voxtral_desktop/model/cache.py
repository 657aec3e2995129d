"""Preallocated sliding-window KV caches.

Keys are stored after RoPE (absolute positions), so a ring buffer needs no re-rotation when it
wraps: only the mask changes. Memory is fixed at construction however long a stream runs.

Two ways to reserve positions:
- eager (`graph_view is None`): positions come from the host counter and attention reads only
  the slots in use, which is the fast choice when every call runs Python anyway;
- graph (`graph_view = V`): positions come from a device counter and attention reads a fixed
  prefix of V slots, so the same kernels can be captured once in a CUDA graph and replayed.
  The caller advances the host mirror (`advance_host`) after each replay.

Entries are stored in the compute dtype, or (`quantized=True`) as int8 codes with one fp32 scale
per position and head (kernels/kv_int8.py): half the memory and half the bytes read per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from voxtral_desktop.kernels.kv_int8 import LayerKV, quantize_kv
from voxtral_desktop.kernels.positions import advance_and_rotate, advance_applies, rope_tables


@dataclass(frozen=True, eq=False)  # tensors: compared by identity
class KeyMask:
    """Which cached keys the T new positions of one call see; shared by all layers.

    Slot s holds position held[s] (negative: empty); the query at positions[t] sees it iff
    0 <= positions[t] - held[s] < window. The fused attention kernel evaluates that rule itself;
    the plain path uses `bias`, the same rule as an additive [G*T, S] matrix (rows (group, t))."""

    positions: torch.Tensor  # [T]
    held: torch.Tensor  # [S]
    window: int
    groups: int = 1  # query heads per KV head
    _bias: dict[torch.dtype, torch.Tensor] = field(default_factory=dict, compare=False, repr=False)

    def visible(self) -> torch.Tensor:
        """[T, S] bool."""
        distance = self.positions[:, None] - self.held[None, :]
        return (self.held[None, :] >= 0) & (distance >= 0) & (distance < self.window)

    def bias(self, dtype: torch.dtype) -> torch.Tensor:
        """[G*T, S]: 0 where visible, -inf elsewhere; built once per dtype."""
        if dtype not in self._bias:
            visible = self.visible()
            bias = torch.zeros(visible.shape, dtype=dtype, device=visible.device)
            self._bias[dtype] = bias.masked_fill_(~visible, float("-inf")).repeat(self.groups, 1)
        return self._bias[dtype]


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
        quantized: bool = False,
    ) -> None:
        shape = (n_layers, batch, n_kv_heads, capacity, head_dim)
        store = torch.int8 if quantized else dtype
        self.k = torch.zeros(shape, device=device, dtype=store)
        self.v = torch.zeros(shape, device=device, dtype=store)
        # one scale per cached vector when quantized: [n_layers, batch, n_kv_heads, capacity]
        self.k_scale = torch.zeros(shape[:-1], device=device) if quantized else None
        self.v_scale = torch.zeros(shape[:-1], device=device) if quantized else None
        self.slot_pos = torch.full(
            (capacity,), -1, dtype=torch.long, device=device
        )  # position held by each slot
        self.pos_t = torch.zeros((), dtype=torch.long, device=device)  # device mirror of next_pos
        self.window = window
        self.capacity = capacity
        self.next_pos = 0  # absolute position of the next entry
        self.graph_view: int | None = None
        self._arange = torch.arange(capacity, device=device)
        self._slots = self._arange[:0]
        self._used = 0

    @staticmethod
    def nbytes(
        *,
        n_layers: int,
        batch: int,
        n_kv_heads: int,
        head_dim: int,
        capacity: int,
        dtype: torch.dtype,
        quantized: bool,
    ) -> int:
        """Bytes a cache of these dimensions allocates: keys and values, and their fp32 scales when
        quantized (the slot positions are negligible)."""
        vectors = 2 * n_layers * batch * n_kv_heads * capacity
        return vectors * (head_dim + 4 if quantized else head_dim * dtype.itemsize)

    def reset(self) -> None:
        self.slot_pos.fill_(-1)
        self.pos_t.zero_()
        self.next_pos = 0
        self._used = 0

    def _check_fits(self, n_new: int) -> None:
        # A cache smaller than window + T - 1 is fine for a stream that never wraps it (file batches).
        if n_new + self.window - 1 > self.capacity and self.next_pos + n_new > self.capacity:
            raise ValueError(
                f"{n_new} new positions do not fit a window of {self.window} in {self.capacity} slots"
            )

    def begin(self, n_new: int, groups: int = 1) -> tuple[torch.Tensor, KeyMask]:
        """Reserve slots for the next `n_new` positions; return (positions [T], what they see).
        `groups`: query heads per KV head of the attention that reads the cache."""
        self._check_fits(n_new)
        if self.graph_view is None:
            positions = self._arange[:n_new] + self.next_pos  # [T]
            # Slots fill in order 0..capacity-1, so before the first wrap only a prefix is in use.
            self._used = min(self.next_pos + n_new, self.capacity)
            self.pos_t.fill_(self.next_pos + n_new)
        else:
            positions = self._arange[:n_new] + self.pos_t
            self.pos_t.add_(n_new)
            self._used = self.graph_view
        self._slots = positions % self.capacity
        self.slot_pos.index_copy_(0, self._slots, positions)
        self.next_pos += n_new
        return positions, KeyMask(positions, self.slot_pos[: self._used], self.window, groups)

    def begin_rotated(
        self, n_new: int, head_dim: int, theta: float, groups: int = 1
    ) -> tuple[torch.Tensor, KeyMask, torch.Tensor]:
        """`begin`, and the rotations of its positions (`rope_tables`): in a captured graph on
        CUDA one kernel does both (kernels/positions.py), else the torch ops."""
        if self.graph_view is None or not advance_applies(self.pos_t):
            positions, mask = self.begin(n_new, groups)
            return positions, mask, rope_tables(positions, head_dim, theta)
        self._check_fits(n_new)
        positions, slots, rotations = advance_and_rotate(self.pos_t, self.slot_pos, n_new, head_dim, theta)
        self._slots = slots
        self._used = self.graph_view
        self.next_pos += n_new
        return positions, KeyMask(positions, self.slot_pos[: self._used], self.window, groups), rotations

    def advance_host(self, n_new: int) -> None:
        """Account on the host for `n_new` positions a replayed graph reserved on the device."""
        self.next_pos += n_new

    @property
    def quantized(self) -> bool:
        return self.k_scale is not None

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> LayerKV:
        """Store k, v [B, Hkv, T, D] of the positions reserved by `begin`; return the used cache."""
        if self.k_scale is None or self.v_scale is None:
            self.k[layer].index_copy_(2, self._slots, k.to(self.k.dtype))
            self.v[layer].index_copy_(2, self._slots, v.to(self.v.dtype))
        else:
            for codes_all, scale_all, x in ((self.k, self.k_scale, k), (self.v, self.v_scale, v)):
                codes, scale = quantize_kv(x)
                codes_all[layer].index_copy_(2, self._slots, codes)
                scale_all[layer].index_copy_(2, self._slots, scale)
        return self.used(layer)

    @property
    def filled(self) -> torch.Tensor:
        """Device integer: slots [0, filled) may hold keys (slots fill in order until the ring
        wraps; past capacity, all of them). Valid after `begin`, inside graphs too."""
        return self.pos_t

    @property
    def slots(self) -> torch.Tensor:
        """Slots [T] of the positions reserved by the last `begin` (device)."""
        return self._slots

    def layer(self, layer: int) -> LayerKV:
        """The whole ring of one layer, keys and values [B, Hkv, capacity, D], for writers that
        store the slots of `begin` themselves (the fused RoPE kernel)."""
        return self._view(layer, self.capacity)

    def used(self, layer: int) -> LayerKV:
        """The slots attention reads after this call's writes: [B, Hkv, S, D]."""
        return self._view(layer, self._used)

    def _view(self, layer: int, n: int) -> LayerKV:
        if self.k_scale is None or self.v_scale is None:
            return LayerKV(self.k[layer, :, :, :n], self.v[layer, :, :, :n])
        return LayerKV(
            self.k[layer, :, :, :n],
            self.v[layer, :, :, :n],
            self.k_scale[layer, :, :, :n],
            self.v_scale[layer, :, :, :n],
        )

    def snapshot(self) -> dict[str, object]:
        """A compact copy of the state before the first wrap (only the slots in use)."""
        used = min(self.next_pos, self.capacity)
        snap: dict[str, object] = {
            "k": self.k[..., :used, :].clone(),
            "v": self.v[..., :used, :].clone(),
            "slot_pos": self.slot_pos.clone(),
            "next_pos": self.next_pos,
        }
        if self.k_scale is not None and self.v_scale is not None:
            snap["k_scale"] = self.k_scale[..., :used].clone()
            snap["v_scale"] = self.v_scale[..., :used].clone()
        return snap

    def restore(self, snap: dict[str, object]) -> None:
        """Back to a `snapshot` of this cache, or of another with the same layers and heads: one
        that has not wrapped, or with the same capacity; a one-stream snapshot fills every row."""
        k, v, slot_pos, next_pos = snap["k"], snap["v"], snap["slot_pos"], snap["next_pos"]
        assert (
            isinstance(k, torch.Tensor) and isinstance(v, torch.Tensor) and isinstance(slot_pos, torch.Tensor)
        )
        assert isinstance(next_pos, int)
        used = k.shape[-2]
        self.k[..., :used, :].copy_(k)
        self.v[..., :used, :].copy_(v)
        if self.k_scale is not None and self.v_scale is not None:
            k_scale, v_scale = snap["k_scale"], snap["v_scale"]
            assert isinstance(k_scale, torch.Tensor) and isinstance(v_scale, torch.Tensor)
            self.k_scale[..., :used].copy_(k_scale)
            self.v_scale[..., :used].copy_(v_scale)
        # Before the first wrap slot i holds position i: a snapshot fits any ring of at least
        # `used` slots, and its rows broadcast (one stream's state into every row of a batch).
        self.slot_pos.fill_(-1)
        self.slot_pos[:used].copy_(slot_pos[:used])
        self.next_pos = next_pos
        self.pos_t.fill_(next_pos)
        self._used = used
