"""The Mistral-style text decoder with delay-conditioned ("Ada") RMS norm.

Names mirror the checkpoint (`layers.N.attention.wq`, `layers.N.ada_rms_norm_t_cond.0`, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from voxtral_desktop.config import DecoderConfig
from voxtral_desktop.kernels.norm_link import NormedRows
from voxtral_desktop.model.cache import KeyMask, KVCache
from voxtral_desktop.model.layers import Attention, FeedForward, RMSNorm, norms_link_layers


def delay_embedding(n_delay_tokens: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """t_cond = [cos(n f), sin(n f)] with f_i = 10000^(-i / (dim/2)): [dim] (cos half first)."""
    half = dim // 2
    inv_freq = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=device) / half)
    angles = torch.tensor(float(n_delay_tokens), device=device).to(dtype) * inv_freq.to(dtype)  # [dim/2]
    return torch.cat([angles.cos(), angles.sin()])


@dataclass
class DecoderState:
    cache: KVCache
    ada_scales: torch.Tensor  # [n_layers, dim]: (1 + ada(t_cond)) of each layer, fixed by the delay

    @classmethod
    def allocate(
        cls,
        config: DecoderConfig,
        ada_scales: torch.Tensor,
        *,
        batch: int,
        max_chunk: int,
        device: torch.device,
        dtype: torch.dtype,
        max_positions: int | None = None,
        kv_int8: bool = False,
    ) -> DecoderState:
        """`max_positions` bounds the cache for streams known to be short (file batches)."""
        capacity = config.sliding_window + max_chunk - 1
        if max_positions is not None:
            capacity = min(capacity, max_positions)
        cache = KVCache(
            n_layers=config.n_layers,
            batch=batch,
            n_kv_heads=config.n_kv_heads,
            head_dim=config.head_dim,
            window=config.sliding_window,
            capacity=capacity,
            device=device,
            dtype=dtype,
            quantized=kv_int8,
        )
        return cls(cache=cache, ada_scales=ada_scales)


class DecoderLayer(nn.Module):
    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(config.dim, config.norm_eps)
        self.attention = Attention(
            config.dim, config.n_heads, config.n_kv_heads, config.head_dim, biases=False
        )
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)
        self.feed_forward = FeedForward(config.dim, config.hidden_dim, out_bias=False)
        # W2 gelu(W1 t_cond): indices 0 and 2 are the checkpoint's names.
        self.ada_rms_norm_t_cond = nn.Sequential(
            nn.Linear(config.dim, config.ada_t_cond_dim, bias=False),
            nn.GELU(),
            nn.Linear(config.ada_t_cond_dim, config.dim, bias=False),
        )

    def forward(
        self,
        x: torch.Tensor,
        rotations: torch.Tensor,
        cache: KVCache,
        index: int,
        mask: KeyMask,
        ada_scale: torch.Tensor,
    ) -> torch.Tensor:
        x, h = self.forward_pending(x, None, rotations, cache, index, mask, ada_scale)
        assert isinstance(h, torch.Tensor)
        return x + h

    def forward_pending(
        self,
        x: torch.Tensor,
        pending: torch.Tensor | NormedRows | None,
        rotations: torch.Tensor,
        cache: KVCache,
        index: int,
        mask: KeyMask,
        ada_scale: torch.Tensor,
        next_norm: RMSNorm | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | NormedRows]:
        """The layer on x + pending with its own last residual add left pending: (x', h) where
        x' + h is the layer's output. Each residual add then runs fused with the next norm.
        Linked (kernels/norm_link.py): `pending` is `NormedRows`, x already added and normed
        with this layer's attention norm; with `next_norm` (the next layer's attention norm) the
        layer returns (its output, `NormedRows` of it) the same way."""
        if isinstance(pending, NormedRows):
            normed: torch.Tensor | NormedRows = pending
        elif pending is None:
            normed = self.attention_norm(x)
        else:
            x, normed = self.attention_norm.add_forward(x, pending)
        h = self.attention(normed, rotations, cache, index, mask)
        x, h = self.ffn_norm.add_forward(x, h, ada_scale)  # x + h and its (Ada-scaled) norm
        if next_norm is not None:
            return self.feed_forward.forward_to_norm(h, x, next_norm)
        return x, self.feed_forward(h)


class Decoder(nn.Module):
    """The decoder stack without the embedding table (which the model shares with the head)."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)

    def ada_scales(self, n_delay_tokens: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """(1 + W2 gelu(W1 t_cond)) for every layer: [n_layers, dim]. Computed once per delay."""
        t_cond = delay_embedding(n_delay_tokens, self.config.dim, device, dtype)
        layers: list[DecoderLayer] = list(self.layers)  # type: ignore[arg-type]
        return torch.stack([1 + layer.ada_rms_norm_t_cond(t_cond) for layer in layers])

    def forward(self, x: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """Embeddings [B, T, dim] of the next T positions -> normed hidden states [B, T, dim]."""
        cfg = self.config
        groups = cfg.n_heads // cfg.n_kv_heads
        _, mask, rotations = state.cache.begin_rotated(x.shape[1], cfg.head_dim, cfg.rope_theta, groups)
        pending: torch.Tensor | NormedRows | None = None
        layers: list[DecoderLayer] = list(self.layers)  # type: ignore[arg-type]
        linked = norms_link_layers(x, layers)
        for index, layer in enumerate(layers):
            next_norm = layers[index + 1].attention_norm if linked and index + 1 < len(layers) else None
            x, pending = layer.forward_pending(
                x, pending, rotations, state.cache, index, mask, state.ada_scales[index], next_norm
            )
        assert not isinstance(pending, NormedRows)  # the last layer's add goes with the final norm
        return self.norm(x) if pending is None else self.norm.add_forward(x, pending)[1]
