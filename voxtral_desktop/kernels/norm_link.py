"""An RMS norm carried from one matmul's epilogue to the next matmul's ("linked").

In a transformer layer the matmul that ends a residual branch (w2) is followed by a residual add,
an RMS norm and the next matmul (wqkv). A backend with `linear_to_norm` (the CUDA mma kernel,
`q4_mma.cu`'s NORM) does the add in the first matmul's epilogue, leaving the new residual and
`NormedRows`, and takes `NormedRows` as the next matmul's input, scaling its outputs by each
row's 1 / rms: no norm kernel runs between them. The identity used is

    rms_norm(x) * gamma @ W^T = rsqrt(mean(x^2) + eps) * ((x * gamma) @ W^T)

so only where the bf16 rounding falls changes (on x * gamma instead of x * rsqrt * gamma).
`NormedRows.dense` is the plain torch form of what the next matmul sees, for any module that
cannot take the link and for tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)  # tensors: compared by identity
class NormedRows:
    """Rows x whose RMS norm the matmul that reads them applies: `scaled` = bf16(x * gamma)
    [..., K] with gamma the norm's weight; `sums` [M, K / 16] fp32, the partial sums of squares of
    x over 16 columns each (M: the rows of `scaled`)."""

    scaled: torch.Tensor
    sums: torch.Tensor
    eps: float

    @property
    def shape(self) -> torch.Size:
        return self.scaled.shape

    def dense(self) -> torch.Tensor:
        """rms_norm(x) * gamma as plain rows (the reference; rounded once, to `scaled`'s dtype)."""
        k = self.scaled.shape[-1]
        mean = self.sums.sum(-1, keepdim=True) / k  # [M, 1]
        rows = self.scaled.reshape(-1, k).float() * torch.rsqrt(mean + self.eps)
        return rows.to(self.scaled.dtype).reshape(self.scaled.shape)


def normed_rows_reference(x: torch.Tensor, gamma: torch.Tensor, eps: float) -> NormedRows:
    """What a linking matmul leaves for new residual rows x [..., K] and the next norm's weight."""
    k = x.shape[-1]
    rows = x.reshape(-1, k).float()
    sums = rows.square().reshape(rows.shape[0], k // 16, 16).sum(-1)
    return NormedRows((x.float() * gamma.float()).to(x.dtype), sums, eps)
