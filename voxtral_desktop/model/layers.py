"""Building blocks shared by the encoder and the decoder.

Layers follow the dtype of their input; RMSNorm statistics are always computed in fp32, as the
reference does. Rotary embeddings use the interleaved (GPT-J pair) layout because that is how
Mistral-native checkpoints store wq/wk; HF permutes the same weights to rotate-half, which gives
identical numbers.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from voxtral_desktop.model.cache import KVCache


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight.to(x.dtype) * x32.to(x.dtype)


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape [T, head_dim // 2] (fp32) for integer positions [T]."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim))
    angles = positions.to(torch.float32)[:, None] * inv_freq[None, :]  # [T, D/2]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x[2i], x[2i+1]) of x [B, T, H, D] by the angles of each position."""
    pairs = x.unflatten(-1, (-1, 2))  # [B, T, H, D/2, 2]
    x0, x1 = pairs[..., 0], pairs[..., 1]
    c = cos.to(x.dtype)[None, :, None, :]  # [1, T, 1, D/2]
    s = sin.to(x.dtype)[None, :, None, :]
    out = torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1)  # [B, T, H, D/2, 2]
    return out.flatten(-2)


class Attention(nn.Module):
    """Causal sliding-window self-attention with GQA over a ring-buffer KV cache.

    Attribute names (wq, wk, wv, wo) are the checkpoint's.
    """

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int, head_dim: int, *, biases: bool) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        # The encoder has biases on wq, wv and wo (never on wk); the decoder has none.
        self.wq = nn.Linear(dim, n_heads * head_dim, bias=biases)
        self.wk = nn.Linear(dim, n_kv_heads * head_dim, bias=False)
        self.wv = nn.Linear(dim, n_kv_heads * head_dim, bias=biases)
        self.wo = nn.Linear(n_heads * head_dim, dim, bias=biases)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache,
        layer: int,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        keys, values = cache.write(layer, k.transpose(1, 2), v.transpose(1, 2))  # [B, Hkv, S, D]
        q = q.transpose(1, 2)  # [B, H, T, D]
        groups = self.n_heads // self.n_kv_heads
        if groups > 1:
            keys = keys.repeat_interleave(groups, dim=1)  # [B, H, S, D]
            values = values.repeat_interleave(groups, dim=1)
        out = F.scaled_dot_product_attention(q, keys.to(q.dtype), values.to(q.dtype), attn_mask=mask)  # [B,H,T,D]
        return self.wo(out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim: int, hidden_dim: int, *, out_bias: bool) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=out_bias)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))
