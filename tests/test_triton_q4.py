"""The Triton Q4_0 kernels against the torch reference, on any machine.

Without a GPU the kernels run in Triton's interpreter (TRITON_INTERPRET=1, set here before the
kernels are first built), so CI checks the same kernel source the GPU runs: tiling, masks, the
nibble order, bias, SwiGLU, both kernels (GEMV and tensor-core matmul). Speed is measured on the
GPU only (bench/tune_q4.py). Triton is a test dependency; a missing one fails here loudly.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

import triton  # noqa: F401  (a missing Triton must fail, not skip)

from voxtral_desktop.kernels.linear import Q4Linear, TiedEmbedding
from voxtral_desktop.kernels.q4 import (
    Q4Weight,
    q4_embedding_reference,
    q4_linear_reference,
    quantize_q4_0,
)
from voxtral_desktop.kernels.triton_q4 import GEMV_MAX_ROWS, TritonQ4Backend, q4_0_linear

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def q4(rows: int, cols: int, seed: int) -> Q4Weight:
    g = torch.Generator().manual_seed(seed)
    return Q4Weight(quantize_q4_0(torch.randn(rows, cols, generator=g) / cols**0.5), (rows, cols))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def silu_mul_reference(gate_up: torch.Tensor) -> torch.Tensor:
    g, u = gate_up.float().chunk(2, dim=-1)
    return (torch.nn.functional.silu(g) * u).to(gate_up.dtype)


# Rows not a multiple of any block, rows of 48 or 80 bytes (masked tails), a row of one block.
SHAPES = [(40, 96), (24, 160), (64, 256), (7, 32), (48, 640)]


@pytest.mark.parametrize(("rows", "cols"), SHAPES)
@pytest.mark.parametrize("m", [1, 3, GEMV_MAX_ROWS, GEMV_MAX_ROWS + 1, 37])
def test_fp32_matches_the_reference(rows: int, cols: int, m: int) -> None:
    w = q4(rows, cols, seed=rows * cols + m)
    prepared = TritonQ4Backend().prepare(w, DEVICE)
    g = torch.Generator().manual_seed(m)
    x = torch.randn(m, cols, generator=g).to(DEVICE)
    bias = torch.randn(rows, generator=g).to(DEVICE)
    ref_w = w.to(DEVICE)
    assert rel_err(q4_0_linear(x, prepared), q4_linear_reference(x, ref_w)) < 1e-5
    assert rel_err(q4_0_linear(x, prepared, bias), q4_linear_reference(x, ref_w, bias)) < 1e-5


@pytest.mark.parametrize("m", [1, 5, 20])
def test_swiglu_input_is_computed_in_the_kernel(m: int) -> None:
    rows, hidden = 40, 128
    w = q4(rows, hidden, seed=3)
    prepared = TritonQ4Backend().prepare(w, DEVICE)
    g = torch.Generator().manual_seed(m)
    gate_up = torch.randn(m, 2 * hidden, generator=g).to(DEVICE) * 3
    bias = torch.randn(rows, generator=g).to(DEVICE)
    ref = q4_linear_reference(silu_mul_reference(gate_up), w.to(DEVICE), bias)
    assert rel_err(q4_0_linear(gate_up, prepared, bias, swiglu=True), ref) < 1e-5
    with pytest.raises(ValueError):
        q4_0_linear(gate_up[:, :hidden], prepared, bias, swiglu=True)


# The bf16 tensor-core matmul (m > 8) is checked in tests/test_gpu.py: Triton's interpreter
# computes bf16 dots wrongly (a 16 x 16 bf16 tl.dot returns values of 1e10 in Triton 3.9).
@pytest.mark.parametrize("m", [1, 4])
def test_bf16_activations_stay_within_bf16_rounding(m: int) -> None:
    rows, cols = 48, 256
    w = q4(rows, cols, seed=5)
    prepared = TritonQ4Backend().prepare(w, DEVICE)
    x = torch.randn(m, cols, generator=torch.Generator().manual_seed(m)).to(DEVICE, torch.bfloat16)
    y = q4_0_linear(x, prepared)
    assert y.dtype == torch.bfloat16
    ref = q4_linear_reference(x.float(), w.to(DEVICE))
    # fp32 accumulation; the bf16 output (and, for the matmul, the bf16 weight) round ~2^-9
    assert rel_err(y, ref) < 8e-3


def test_q4_linear_and_tied_embedding_use_the_backend_without_a_second_copy() -> None:
    w = q4(64, 96, seed=7)
    backend = TritonQ4Backend()
    layer = Q4Linear(w, torch.randn(64).to(DEVICE), backend, DEVICE)
    assert layer.fuses_swiglu
    x = torch.randn(2, 3, 96).to(DEVICE)
    assert layer(x).shape == (2, 3, 64)
    assert rel_err(layer(x), q4_linear_reference(x, w.to(DEVICE), layer.bias)) < 1e-5

    table = TiedEmbedding(w, backend, DEVICE)
    assert table.q4 is None  # rows come from the backend's own layout
    ids = torch.tensor([[0, 5, 63], [2, 2, 1]], device=DEVICE)
    assert torch.equal(
        table.embed(ids, torch.float32), q4_embedding_reference(ids, w.to(DEVICE), torch.float32)
    )
    assert rel_err(table.logits(x), q4_linear_reference(x, w.to(DEVICE))) < 1e-5


def test_tiny_model_through_the_triton_kernels_gives_the_reference_tokens(
    tokenizer_small, monkeypatch
) -> None:
    """The whole model wired to the Triton backend (fused q/k/v and gate/up, SwiGLU inside w2's
    kernel, embedding rows from the split layout, GEMV for steps and matmul for the prompt)."""
    if not torch.cuda.is_available():  # large tiles: the interpreter's cost is per program
        monkeypatch.setenv("VOXTRAL_Q4_GEMV", "64,32,4")
        monkeypatch.setenv("VOXTRAL_Q4_MATMUL", "64,128,64,4,1")
    from test_fast_paths import q4_tensors
    from test_parity import VOCAB, our_tokens, reference_tokens, speechlike

    from voxtral_desktop.config import StreamConfig
    from voxtral_desktop.engine.session import StreamingSession
    from voxtral_desktop.model.build import build_model
    from voxtral_desktop.synthetic.model import tiny_config

    config = tiny_config(decoder_vocab_size=VOCAB)
    tensors = q4_tensors(config, 31)
    stream, audio = StreamConfig(480), speechlike(1.2, 31)
    model = build_model(
        config, tensors, device=DEVICE, dtype=torch.float32, q4_backend=TritonQ4Backend(), fuse=True
    )
    assert model.decoder.layers[0].feed_forward.w2.fuses_swiglu
    assert our_tokens(StreamingSession(model, tokenizer_small, stream), audio) == reference_tokens(
        config, tensors, audio, stream
    )
