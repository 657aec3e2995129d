"""The kernel interface: a linear layer and an embedding table over dense or Q4_0 weights.

The model is written against plain `nn.Linear` / `nn.Embedding`; after a checkpoint is read,
`swap_in_weights` replaces each one with the module that fits its weight (gpt-fast style), so
`model/` stays float-only. Every module here has a plain torch reference path; faster backends
(CPU int4pack, CUDA tinygemm/Triton, WGSL) plug in behind the same two classes by choosing a
`Q4Backend` for the device, and are tested against `q4_linear_reference`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import torch
from torch import nn

from voxtral_desktop.kernels import fused
from voxtral_desktop.kernels.norm_link import NormedRows
from voxtral_desktop.kernels.q4 import Q4Weight, dequantize_q4_0, q4_embedding_reference, q4_linear_reference


class Q4Backend(Protocol):
    """How one device multiplies by a Q4_0 matrix. `prepare` runs once at load time."""

    name: str

    def supports(self, weight: Q4Weight) -> bool: ...

    def prepare(self, weight: Q4Weight, device: torch.device) -> object: ...

    def linear(self, x: torch.Tensor, prepared: object, bias: torch.Tensor | None) -> torch.Tensor: ...


# Optional backend methods, used when present:
#   linear_swiglu(gate_up, prepared, bias): W (silu(gate) * up) + b from the fused gate/up pair;
#   embed_rows(prepared, ids, dtype): rows of the matrix, so a tied table is stored once;
#   embed_rows_plus(prepared, ids, add): embed_rows(...) + add in add's dtype, in one kernel;
#   dequantize(prepared, dtype): the dense matrix [N, K] (see `dense_weights`);
#   linear_to_norm(x, prepared, bias, residual, gamma, eps): (residual + linear(x), `NormedRows` of
#   it for the RMS norm of weight gamma), with `linear` / `linear_gated` taking `NormedRows` too
#   (kernels/norm_link.py).

# Norms linked between matmuls (`Q4Linear.links_norm`) where the rows are at most this many: a
# streaming step's (one decoder position, 4 encoder frames; q4_mma.cu copies their partial sums
# to shared memory). False: never (for A/B runs and tests).
NORM_LINKS = True
NORM_LINK_MAX_ROWS = 8


class ReferenceQ4Backend:
    """Dequantise on the fly with `dequantize_q4_0`: exact, slow, works on every device."""

    name = "reference"

    @staticmethod
    def supports(weight: Q4Weight) -> bool:
        return True

    def prepare(self, weight: Q4Weight, device: torch.device) -> Q4Weight:
        return weight.to(device)

    def linear(self, x: torch.Tensor, prepared: object, bias: torch.Tensor | None) -> torch.Tensor:
        assert isinstance(prepared, Q4Weight)
        return q4_linear_reference(x, prepared, bias)

    def dequantize(self, prepared: object, dtype: torch.dtype) -> torch.Tensor:
        assert isinstance(prepared, Q4Weight)
        return dequantize_q4_0(prepared.blocks, dtype)


REFERENCE = ReferenceQ4Backend()


GATE_ROWS = 8  # a gated gate/up pair alternates 8 gate rows and the 8 matching up rows


def interleave_gate_up(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Rows [H, ...] twice -> [2H, ...]: gate rows 0..7, up rows 0..7, gate rows 8..15, ...
    (for Q4_0, rows of blocks: the bytes of every row are unchanged)."""
    h, rest = gate.shape[0], gate.shape[1:]
    pair = torch.stack(
        [gate.reshape(h // GATE_ROWS, GATE_ROWS, *rest), up.reshape(h // GATE_ROWS, GATE_ROWS, *rest)], 1
    )
    return pair.reshape(2 * h, *rest)


def silu_gate_up(y: torch.Tensor) -> torch.Tensor:
    """[..., 2H] in `interleave_gate_up` order -> silu(gate) * up [..., H], computed in fp32 and
    rounded once: one fused kernel on CUDA (where a file batch's dense copies run the gated
    pair; in torch it is five passes over fp32 temporaries), else in torch."""
    if fused.enabled(y):
        return fused.silu_mul(y, interleaved=GATE_ROWS)
    pair = y.float().unflatten(-1, (-1, 2, GATE_ROWS))
    gate, up = pair[..., 0, :].flatten(-2), pair[..., 1, :].flatten(-2)
    return (nn.functional.silu(gate) * up).to(y.dtype)


class Q4Linear(nn.Module):
    """y = x W^T + b with W stored as Q4_0 blocks.

    gated: W is SwiGLU's gate/up pair in `interleave_gate_up` order and the module returns
    silu(gate) * up (in the matmul's epilogue where the backend has `linear_gated`)."""

    def __init__(
        self,
        weight: Q4Weight,
        bias: torch.Tensor | None,
        backend: Q4Backend = REFERENCE,
        device: torch.device | None = None,
        gated: bool = False,
    ) -> None:
        super().__init__()
        self.gated = gated
        self.out_features, self.in_features = weight.shape
        # Shapes a fast kernel cannot take (e.g. tiny test models) use the exact reference.
        backend = backend if backend.supports(weight) else REFERENCE
        self.backend = backend
        # Only the backend's own layout lives on the device (not the GGUF blocks as well).
        self.prepared = backend.prepare(weight, device or weight.blocks.device)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.dense: torch.Tensor | None = None  # set inside `dense_weights` or `DenseCopy.applied`

    def forward(self, x: torch.Tensor | NormedRows) -> torch.Tensor:
        if isinstance(x, NormedRows):
            if not self.links_norm:
                return self.forward(x.dense())
            bias = None if self.bias is None else self.bias.to(x.scaled.dtype)
            if self.gated:
                return self.backend.linear_gated(x, self.prepared, bias)  # type: ignore[attr-defined]
            return self.backend.linear(x, self.prepared, bias)  # type: ignore[arg-type]
        bias = None if self.bias is None else self.bias.to(x.dtype)
        if self.gated and self.dense is None and hasattr(self.backend, "linear_gated"):
            return self.backend.linear_gated(x, self.prepared, bias)  # type: ignore[attr-defined]
        if self.dense is not None:
            y = nn.functional.linear(x, self.dense.to(x.dtype), bias)
        else:
            y = self.backend.linear(x, self.prepared, bias)
        return silu_gate_up(y) if self.gated else y

    @property
    def links_norm(self) -> bool:
        """Whether an RMS norm can be linked to this matrix: `to_norm`, `NormedRows` inputs."""
        gated_ok = not self.gated or hasattr(self.backend, "linear_gated")
        return self.dense is None and hasattr(self.backend, "linear_to_norm") and gated_ok

    def to_norm(
        self, x: torch.Tensor, residual: torch.Tensor, gamma: torch.Tensor, eps: float
    ) -> tuple[torch.Tensor, NormedRows]:
        """(residual + self(x), `NormedRows` of that for the RMS norm of weight `gamma`), the add
        and the norm's statistics in the matmul's epilogue (`links_norm` must hold)."""
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return self.backend.linear_to_norm(x, self.prepared, bias, residual, gamma, eps)  # type: ignore[attr-defined]

    @property
    def fuses_swiglu(self) -> bool:
        return hasattr(self.backend, "linear_swiglu")

    def forward_swiglu(self, gate_up: torch.Tensor) -> torch.Tensor:
        """forward(silu(gate) * up) for gate_up = (gate | up) [..., 2 in_features], in one kernel."""
        if self.dense is not None:
            gate, up = gate_up.chunk(2, dim=-1)
            return self.forward(nn.functional.silu(gate) * up)
        bias = None if self.bias is None else self.bias.to(gate_up.dtype)
        return self.backend.linear_swiglu(gate_up, self.prepared, bias)  # type: ignore[attr-defined]

    def extra_repr(self) -> str:
        gated = ", gated" if self.gated else ""
        return f"in={self.in_features}, out={self.out_features}, q4_0, backend={self.backend.name}{gated}"


def linear_bias_later(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(x W^T, b) when `module`'s backend would add its bias as one more kernel (tinygemm), so
    that a fused kernel downstream adds it on the way (the same rounding: the sum is rounded to
    x's dtype before use); else (module(x), None)."""
    if (
        isinstance(module, Q4Linear)
        and module.bias is not None
        and module.dense is None
        and getattr(module.backend, "separate_bias", False)
    ):
        return module.backend.linear(x, module.prepared, None), module.bias.to(x.dtype)
    return module(x), None


def norm_links_apply(x: torch.Tensor) -> bool:
    """Whether rows x [..., dim] can take RMS norms linked between Q4 matrices whose
    `links_norm` holds (kernels/norm_link.py): bf16 on CUDA, a streaming step's few rows."""
    return (
        NORM_LINKS
        and x.dtype == torch.bfloat16
        and fused.enabled(x)
        and x.numel() // x.shape[-1] <= NORM_LINK_MAX_ROWS
    )


def add_bias(out: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The add `linear_bias_later` left out, for callers with no fused kernel to do it."""
    return out if bias is None else out + bias


def _dense_capable(module: nn.Module) -> list[Q4Linear | TiedEmbedding]:
    """The Q4 matrices of `module` (linear layers, the tied output head) that can run dense."""
    return [
        m
        for m in module.modules()
        if isinstance(m, (Q4Linear, TiedEmbedding))
        and m.prepared is not None
        and hasattr(m.backend, "dequantize")
    ]


def dense_nbytes(module: nn.Module, dtype: torch.dtype) -> int:
    """Bytes the dense forms of `module`'s Q4 matrices take (`DenseCopy`, `dense_weights`)."""
    return sum(m.out_features * m.in_features for m in _dense_capable(module)) * dtype.itemsize


class DenseCopy:
    """The dense forms of a module's Q4 matrices, held by their owner (a file batch decoder) and
    put in place only while it runs (`applied`): other users of the model keep the Q4 kernels,
    and CUDA graphs captured inside keep reading these tensors for as long as the owner lives.

    Each output is what the backend's dense form of the weight gives (exactly the reference for
    `reference`). While applied, every user of the module runs dense: one thread at a time
    (the engine's worker owns the model), and no graph captured meanwhile may outlive the copy."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        self.pairs = [(m, m.backend.dequantize(m.prepared, dtype)) for m in _dense_capable(module)]  # type: ignore[attr-defined]

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Inside, the matrices run as dense matmuls; ones already dense (an enclosing copy) stay."""
        changed = [m for m, _ in self.pairs if m.dense is None]
        try:
            for m, w in self.pairs:
                if m.dense is None:
                    m.dense = w
            yield
        finally:
            for m in changed:
                m.dense = None


@contextmanager
def dense_weights(module: nn.Module, dtype: torch.dtype) -> Iterator[None]:
    """Inside, every Q4 matrix of `module` whose backend can dequantise runs as a dense matmul.

    For long runs of large matmuls (the encoder over a batch of whole files): int4 kernels are
    fast at a few rows and slow at thousands, where dequantising once (0.97 B weights of the
    encoder: 1.9 GB in bf16, held only inside) and using cuBLAS wins. Matrices that are already
    dense (inside a `DenseCopy`) are left as they are."""
    pending = nn.ModuleList([m for m in _dense_capable(module) if m.dense is None])
    with DenseCopy(pending, dtype).applied():
        yield


class TiedEmbedding(nn.Module):
    """The token table, used both to embed ids and (tied) as the output head."""

    def __init__(
        self,
        weight: torch.Tensor | Q4Weight,
        backend: Q4Backend = REFERENCE,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        if isinstance(weight, Q4Weight):
            backend = backend if backend.supports(weight) else REFERENCE
            device = device or weight.blocks.device
            self.prepared = weight.to(device) if backend is REFERENCE else backend.prepare(weight, device)
            # Rows are dequantised on lookup: from the backend's own layout where it can, else from
            # a copy of the GGUF blocks.
            self.rows_from_prepared = backend is REFERENCE or hasattr(backend, "embed_rows")
            self.q4: Q4Weight | None = None if self.rows_from_prepared else weight.to(device)
            self.weight = None
        else:
            self.q4, self.prepared, self.rows_from_prepared = None, None, False
            self.weight = nn.Parameter(weight, requires_grad=False)
        self.backend = backend
        self.out_features, self.in_features = weight.shape  # vocab, dim
        self.dense: torch.Tensor | None = None  # the head's dense form, inside a `DenseCopy`

    def embed(self, ids: torch.Tensor, dtype: torch.dtype, add: torch.Tensor | None = None) -> torch.Tensor:
        """[...] int64 -> [..., dim]; with `add` [..., dim], the rows in its dtype plus it (in one
        kernel where the backend has `embed_rows_plus`)."""
        if add is not None:
            plus = self.rows_from_prepared and hasattr(self.backend, "embed_rows_plus")
            plus = plus and not isinstance(self.prepared, Q4Weight)
            if plus and add.shape == (*ids.shape, self.in_features):
                return self.backend.embed_rows_plus(self.prepared, ids, add)  # type: ignore[attr-defined]
            return self.embed(ids, add.dtype) + add
        if self.rows_from_prepared:
            if isinstance(self.prepared, Q4Weight):
                return q4_embedding_reference(ids, self.prepared, dtype)
            return self.backend.embed_rows(self.prepared, ids, dtype)  # type: ignore[attr-defined]
        if self.q4 is not None:
            return q4_embedding_reference(ids, self.q4, dtype)
        assert self.weight is not None
        return nn.functional.embedding(ids, self.weight).to(dtype)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """[..., dim] -> [..., vocab]."""
        if self.dense is not None:
            return nn.functional.linear(h, self.dense.to(h.dtype))
        if self.prepared is not None:
            return self.backend.linear(h, self.prepared, None)
        assert self.weight is not None
        return nn.functional.linear(h, self.weight.to(h.dtype))
