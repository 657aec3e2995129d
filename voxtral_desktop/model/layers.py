"""Building blocks shared by the encoder and the decoder.

Layers follow the dtype of their input; RMSNorm statistics are always accumulated in fp32, as
the reference does. Rotary embeddings use the interleaved (GPT-J pair) layout because that is how
Mistral-native checkpoints store wq/wk; HF permutes the same weights to rotate-half, which gives
identical numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from voxtral_desktop.kernels import fused
from voxtral_desktop.kernels.kv_int8 import LayerKV
from voxtral_desktop.kernels.linear import Q4Linear, add_bias, linear_bias_later, norm_links_apply
from voxtral_desktop.kernels.norm_link import NormedRows
from voxtral_desktop.model.cache import KeyMask, KVCache


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim), requires_grad=False)

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """rms_norm(x) * weight, times `scale` [dim] if given (the decoder's Ada scale)."""
        if fused.enabled(x):  # one Triton kernel for the norm, its weight and the scale
            return fused.rms_norm(x, self.weight, self.eps, scale)
        # The statistics are accumulated in fp32 whatever the input dtype.
        y = F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.eps)
        return y if scale is None else y * scale.to(x.dtype)

    def add_forward(
        self,
        x: torch.Tensor,
        residual: torch.Tensor,
        scale: torch.Tensor | None = None,
        residual_bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x + residual, forward(x + residual, scale)): the residual add fused with the norm.
        `residual_bias`: a bias the residual branch's last matmul left to add (see
        `linear_bias_later`), added to `residual` first."""
        if fused.enabled(x):
            return fused.add_rms_norm(x, residual, self.weight, self.eps, scale, residual_bias)
        if residual_bias is not None:
            residual = residual + residual_bias
        x = x + residual
        return x, self.forward(x, scale)


def apply_rope(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x[2i], x[2i+1]) of x [B, T, H, D], in fp32, by [T, D/2] rotations."""
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))  # [B, T, H, D/2] complex
    return torch.view_as_real(pairs * rotations[None, :, None, :]).flatten(-2).to(x.dtype)


def attend(q: torch.Tensor, kv: LayerKV, mask: KeyMask, filled: torch.Tensor | None = None) -> torch.Tensor:
    """Masked softmax attention with grouped KV heads, as plain matmuls.

    q [B, H, T, D], keys/values `kv` [B, Hkv, S, D] (compute dtype or int8 with scales), `mask`
    which of the S keys each position sees -> [B, H, T, D]. Scores are softmaxed in fp32 like
    the reference. Query heads are grouped onto their KV head by a reshape, so keys are never
    repeated in memory. Plain matmuls (rather than a kernel chosen per shape) keep every step's
    kernels the same whatever the cache fill, which is what CUDA graphs need.
    `filled` (device integer, optional): keys at or past it are masked anyway; the fused kernel
    skips reading them.
    """
    B, H, T, D = q.shape
    Hkv, S = kv.k.shape[1], kv.k.shape[2]
    groups = H // Hkv
    if fused.attention_applies(q):  # CUDA: one fused kernel (two for a streaming step)
        return fused.attention(q, kv, mask.positions, mask.held, mask.window, filled)
    k, v = kv.dense(q.dtype)
    qg = q.reshape(B * Hkv, groups * T, D)  # [B Hkv, G T, D]: rows are (group, t)
    # scale, matmul and mask in one kernel; the softmax accumulates in fp32 like the reference
    scores = torch.baddbmm(
        mask.bias(q.dtype).expand(B * Hkv, groups * T, S), qg, k.reshape(B * Hkv, S, D).transpose(1, 2),
        alpha=D**-0.5,
    )  # fmt: skip
    weights = torch.softmax(scores, dim=-1)  # [B Hkv, G T, S]
    out = torch.bmm(weights, v.reshape(B * Hkv, S, D))  # [B Hkv, G T, D]
    return out.view(B, H, T, D)


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
        self.wqkv: nn.Module | None = None  # set by `fuse_projections`: one matmul instead of three

    def project_qkv(
        self, x: torch.Tensor, rotations: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, T, dim] -> rotated q [B, T, H, D], rotated k and v [B, T, Hkv, D]."""
        B, T, _ = x.shape
        heads = self.n_heads + self.n_kv_heads
        if self.wqkv is None:
            qk = torch.cat([self.wq(x), self.wk(x)], dim=-1)
            v = self.wv(x)
        else:
            qkv = self.wqkv(x)  # [B, T, (H + 2 Hkv) D]
            qk, v = qkv[..., : heads * self.head_dim], qkv[..., heads * self.head_dim :]
        # q and k heads are rotated together: one kernel sequence instead of two.
        qk = apply_rope(qk.reshape(B, T, heads, self.head_dim), rotations)  # [B, T, H + Hkv, D]
        q, k = qk.split([self.n_heads, self.n_kv_heads], dim=2)
        return q, k, v.reshape(B, T, self.n_kv_heads, self.head_dim)

    def forward(
        self,
        x: torch.Tensor | NormedRows,
        rotations: torch.Tensor,
        cache: KVCache,
        layer: int,
        mask: KeyMask,
    ) -> torch.Tensor:
        """`mask`: what the new positions see, from the cache's `begin` (shared by all layers);
        x may be `NormedRows` (the norm before this block linked to the matmul before it)."""
        return add_bias(*self.forward_bias_later(x, rotations, cache, layer, mask))

    def forward_bias_later(
        self,
        x: torch.Tensor | NormedRows,
        rotations: torch.Tensor,
        cache: KVCache,
        layer: int,
        mask: KeyMask,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(output without wo's bias, that bias) when a fused kernel can add it later (tinygemm
        takes no bias: the encoder's three bias adds per layer were one kernel each); else
        (output, None). The qkv bias rides in the fused RoPE kernel the same way."""
        B, T, _ = x.shape
        fast = self.wqkv is not None and fused.enabled(x.scaled if isinstance(x, NormedRows) else x)
        if isinstance(x, NormedRows) and not (fast and isinstance(self.wqkv, Q4Linear)):
            x = x.dense()
        if fast:
            assert self.wqkv is not None
            if isinstance(x, NormedRows):  # a linked norm: wqkv applies it (kernels/norm_link.py)
                qkv, qkv_bias = self.wqkv(x), None
            else:
                qkv, qkv_bias = linear_bias_later(self.wqkv, x)
            # One kernel: rotate q and k, q to [B, H, T, D], k and v into the cache slots.
            q = fused.rope_qkv_to_cache(
                qkv, rotations, cache.slots, cache.layer(layer),
                self.n_heads, self.n_kv_heads, self.head_dim, qkv_bias,
            )  # fmt: skip
            out = attend(q, cache.used(layer), mask, cache.filled)  # [B, H, T, D]
            return linear_bias_later(self.wo, out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim))
        assert not isinstance(x, NormedRows)
        q, k, v = self.project_qkv(x, rotations)
        kv = cache.write(layer, k.transpose(1, 2), v.transpose(1, 2))  # [B, Hkv, S, D]
        out = attend(q.transpose(1, 2), kv, mask)  # [B, H, T, D]
        return self.wo(out.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)), None


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim: int, hidden_dim: int, *, out_bias: bool) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, dim, bias=out_bias)
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)
        self.w13: nn.Module | None = None  # set by `fuse_projections`: gate and up in one matmul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return add_bias(*self.forward_bias_later(x))

    @property
    def links_norm(self) -> bool:
        """Whether w2 can end the block with the next RMS norm in its epilogue (`forward_to_norm`)."""
        w13, w2 = self.w13, self.w2
        gated = isinstance(w13, Q4Linear) and w13.gated and w13.links_norm
        return gated and isinstance(w2, Q4Linear) and w2.links_norm

    def forward_to_norm(
        self, x: torch.Tensor, residual: torch.Tensor, norm: RMSNorm
    ) -> tuple[torch.Tensor, NormedRows]:
        """(residual + self(x), `NormedRows` of it for `norm`): the residual add and the next
        norm's statistics in w2's epilogue (kernels/norm_link.py; `links_norm` must hold)."""
        assert isinstance(self.w13, Q4Linear) and isinstance(self.w2, Q4Linear)
        return self.w2.to_norm(self.w13(x), residual, norm.weight, norm.eps)

    def forward_bias_later(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(output, None), or (output without w2's bias, that bias) as `Attention`'s."""
        if self.w13 is None:
            gate, up = self.w1(x), self.w3(x)
        elif getattr(self.w13, "gated", False):  # silu(gate) * up computed by w13's kernel
            return linear_bias_later(self.w2, self.w13(x))
        elif getattr(self.w2, "fuses_swiglu", False):  # silu(gate) * up computed inside w2's kernel
            return self.w2.forward_swiglu(self.w13(x)), None  # type: ignore[operator]
        elif fused.enabled(x):
            return linear_bias_later(self.w2, fused.silu_mul(self.w13(x)))
        else:
            gate, up = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * up), None


def norms_link_layers(x: torch.Tensor, layers: Sequence[nn.Module]) -> bool:
    """Whether each of `layers` (encoder or decoder layers) can end with the next one's attention
    norm linked: its w2 adds the residual and readies the norm, the next wqkv applies it (one norm
    kernel fewer a layer pair on CUDA's mma kernel; kernels/norm_link.py). The rows' own
    conditions come first: on other devices the layers are not looked at."""
    if not norm_links_apply(x):
        return False
    for layer in layers:
        ffn, att = layer.feed_forward, layer.attention
        if not (isinstance(ffn, FeedForward) and ffn.links_norm and isinstance(att, Attention)):
            return False
        if not (isinstance(att.wqkv, Q4Linear) and att.wqkv.links_norm):
            return False
    return True
