"""The causal Whisper-style audio encoder: conv stem + sliding-window transformer.

Module and attribute names mirror the checkpoint (`conv_layers.0.conv`, `transformer.layers.N.
attention.wq`, ...), so tensors load by name. The encoder runs on chunks of whole decoder
positions (8 mel frames -> 4 encoder frames each); the conv tails and the KV cache carried in
`EncoderState` make any chunking give the frames of one pass over the whole stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from voxtral_desktop.config import CONV_STRIDE, EncoderConfig
from voxtral_desktop.kernels import conv_stem
from voxtral_desktop.kernels.linear import add_bias
from voxtral_desktop.kernels.norm_link import NormedRows
from voxtral_desktop.model.cache import KeyMask, KVCache
from voxtral_desktop.model.layers import Attention, FeedForward, RMSNorm, norms_link_layers


def _cache_dims(config: EncoderConfig, batch: int, max_chunk_frames: int) -> dict[str, int]:
    """The encoder cache's dimensions: the window plus a chunk, so no key a chunk sees is overwritten."""
    return dict(
        n_layers=config.n_layers,
        batch=batch,
        n_kv_heads=config.n_heads,
        head_dim=config.head_dim,
        capacity=config.sliding_window + max_chunk_frames - 1,
    )


@dataclass
class EncoderState:
    """Conv tails (the causal left context of each conv) and the encoder KV cache."""

    conv1_tail: torch.Tensor  # [B, n_mels, 2]: last 2 mel frames (conv1: kernel 3, stride 1)
    conv2_tail: torch.Tensor  # [B, dim, 1]: last conv1 output (conv2: kernel 3, stride 2)
    cache: KVCache

    @classmethod
    def allocate(
        cls,
        config: EncoderConfig,
        *,
        batch: int,
        max_chunk_frames: int,
        device: torch.device,
        dtype: torch.dtype,
        kv_int8: bool = False,
    ) -> EncoderState:
        cache = KVCache(
            **_cache_dims(config, batch, max_chunk_frames),
            window=config.sliding_window,
            device=device,
            dtype=dtype,
            quantized=kv_int8,
        )
        return cls(
            conv1_tail=torch.zeros(batch, config.n_mels, 2, device=device, dtype=dtype),
            conv2_tail=torch.zeros(batch, config.dim, 1, device=device, dtype=dtype),
            cache=cache,
        )

    @staticmethod
    def cache_bytes(
        config: EncoderConfig, *, batch: int, max_chunk_frames: int, dtype: torch.dtype, kv_int8: bool
    ) -> int:
        """Bytes the KV cache of `allocate` with these arguments takes (the conv tails are small)."""
        return KVCache.nbytes(**_cache_dims(config, batch, max_chunk_frames), dtype=dtype, quantized=kv_int8)

    def reset(self) -> None:
        self.conv1_tail.zero_()
        self.conv2_tail.zero_()
        self.cache.reset()

    def snapshot(self) -> dict[str, object]:
        return {
            "conv1": self.conv1_tail.clone(),
            "conv2": self.conv2_tail.clone(),
            "cache": self.cache.snapshot(),
        }

    def restore(self, snap: dict[str, object]) -> None:
        conv1, conv2, cache = snap["conv1"], snap["conv2"], snap["cache"]
        assert isinstance(conv1, torch.Tensor) and isinstance(conv2, torch.Tensor) and isinstance(cache, dict)
        self.conv1_tail.copy_(conv1)
        self.conv2_tail.copy_(conv2)
        self.cache.restore(cache)


class ConvLayer(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel_size=3, stride=stride)

    def linear(self, cols: torch.Tensor) -> torch.Tensor:
        """The conv as a matmul over its unfolded input [B, T', C*3] -> [B, T', O], before GELU."""
        w = self.conv.weight  # [O, C, 3]
        return F.linear(cols, w.reshape(w.shape[0], -1), self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Causal conv + GELU; the caller prepends the left context (the conv tail).

        On CUDA the conv runs as one matmul over the unfolded input: cuDNN re-lays out the
        1280 x 1280 x 3 weight on every call (22 us, 4 times per streaming step, on an H100)."""
        if not x.is_cuda:
            return F.gelu(self.conv(x))
        B, C, _ = x.shape
        taps = self.conv.weight.shape[-1]
        cols = x.unfold(-1, taps, self.conv.stride[0])  # [B, C, T', 3]
        cols = cols.permute(0, 2, 1, 3).reshape(B, -1, C * taps)  # [B, T', C*3]
        return F.gelu(self.linear(cols)).transpose(1, 2)


# A residual branch not yet added: its output and, if a fused kernel is to add it, its bias.
Pending = tuple[torch.Tensor, torch.Tensor | None]


class EncoderLayer(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(config.dim, config.norm_eps)
        self.attention = Attention(config.dim, config.n_heads, config.n_heads, config.head_dim, biases=True)
        self.ffn_norm = RMSNorm(config.dim, config.norm_eps)
        self.feed_forward = FeedForward(config.dim, config.hidden_dim, out_bias=True)

    def forward(
        self, x: torch.Tensor, rotations: torch.Tensor, cache: KVCache, index: int, mask: KeyMask
    ) -> torch.Tensor:
        x, pending = self.forward_pending(x, None, rotations, cache, index, mask)
        assert not isinstance(pending, NormedRows)
        return x + add_bias(*pending)

    def forward_pending(
        self,
        x: torch.Tensor,
        pending: Pending | NormedRows | None,
        rotations: torch.Tensor,
        cache: KVCache,
        index: int,
        mask: KeyMask,
        next_norm: RMSNorm | None = None,
    ) -> tuple[torch.Tensor, Pending | NormedRows]:
        """The layer on x + pending, its last residual add left pending (see the decoder's);
        a pending branch may carry its matmul's bias too, added inside the next fused norm.
        `NormedRows` and `next_norm`: linked norms, as the decoder's."""
        if isinstance(pending, NormedRows):
            normed: torch.Tensor | NormedRows = pending
        elif pending is None:
            normed = self.attention_norm(x)
        else:
            x, normed = self.attention_norm.add_forward(x, pending[0], residual_bias=pending[1])
        h, bias = self.attention.forward_bias_later(normed, rotations, cache, index, mask)
        x, h = self.ffn_norm.add_forward(x, h, residual_bias=bias)  # x + h and its norm
        if next_norm is not None:
            return self.feed_forward.forward_to_norm(h, x, next_norm)
        return x, self.feed_forward.forward_bias_later(h)


class Transformer(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)


class WhisperEncoder(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.conv_layers = nn.ModuleList(
            [ConvLayer(config.n_mels, config.dim, 1), ConvLayer(config.dim, config.dim, CONV_STRIDE)]
        )
        self.transformer = Transformer(config)

    def forward(self, mel: torch.Tensor, state: EncoderState) -> torch.Tensor:
        """mel [B, n_mels, T] (T even) -> encoder frames [B, T/2, dim], advancing `state`."""
        if mel.shape[-1] % CONV_STRIDE:
            raise ValueError(f"the encoder takes an even number of mel frames, got {mel.shape[-1]}")
        convs: list[ConvLayer] = list(self.conv_layers)  # type: ignore[arg-type]
        conv1, conv2 = convs
        if conv_stem.applies(state.conv1_tail, mel.shape[-1]):  # a few frames on CUDA: 5 kernels less
            cols = conv_stem.unfold(state.conv1_tail, mel, 1, channels_last=False, gelu=False)
            y = conv1.linear(cols)  # [B, T, dim], before GELU (applied by the next unfold)
            cols = conv_stem.unfold(state.conv2_tail, y, CONV_STRIDE, channels_last=True, gelu=True)
            x = F.gelu(conv2.linear(cols))  # [B, T/2, dim]
        else:
            x = torch.cat([state.conv1_tail, mel.to(state.conv1_tail.dtype)], dim=-1)  # [B, n_mels, T+2]
            state.conv1_tail.copy_(x[..., -2:])
            x = conv1(x)  # [B, dim, T]
            x = torch.cat([state.conv2_tail, x], dim=-1)  # [B, dim, T+1]
            state.conv2_tail.copy_(x[..., -1:])
            x = conv2(x)  # [B, dim, T/2]
            x = x.transpose(1, 2)  # [B, T/2, dim]

        cfg = self.config
        _, mask, rotations = state.cache.begin_rotated(x.shape[1], cfg.head_dim, cfg.rope_theta)
        pending: Pending | NormedRows | None = None
        layers: list[EncoderLayer] = list(self.transformer.layers)  # type: ignore[arg-type]
        linked = norms_link_layers(x, layers)
        for index, layer in enumerate(layers):
            next_norm = layers[index + 1].attention_norm if linked and index + 1 < len(layers) else None
            x, pending = layer.forward_pending(x, pending, rotations, state.cache, index, mask, next_norm)
        assert not isinstance(pending, NormedRows)  # the last layer's add goes with the final norm
        norm = self.transformer.norm
        return norm(x) if pending is None else norm.add_forward(x, pending[0], residual_bias=pending[1])[1]
