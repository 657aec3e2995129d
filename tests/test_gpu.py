"""CUDA paths: run on the lent GPU machine with `pytest -m gpu` (skipped with a reason elsewhere).

- Kernels against the torch reference (tinygemm int4, the Triton Q4_0 GEMV, the tensor-core
  Q4_0 kernel compiled by NVRTC).
- Exactness of the fast machinery (fused projections, CUDA graphs with bucketed attention,
  the batched file decoder): in fp32 with the exact Triton kernel, tokens equal HF's.
- The bf16 fast path on the full-size random model: logits within a stated tolerance of the
  fp32 reference path on the same inputs (teacher-forced).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_parity import VOCAB, reference_tokens, speechlike

from voxtral_desktop.config import ModelConfig, StreamConfig
from voxtral_desktop.engine.batch import BatchDecoder
from voxtral_desktop.engine.session import StreamingSession
from voxtral_desktop.engine.transcribe import transcribe_stream
from voxtral_desktop.kernels.int4pack import CudaInt4Backend
from voxtral_desktop.kernels.mma_q4 import CudaMmaQ4Backend
from voxtral_desktop.kernels.q4 import Q4Weight, q4_linear_reference, quantize_q4_0
from voxtral_desktop.kernels.triton_q4 import TritonQ4Backend
from voxtral_desktop.model.build import build_model
from voxtral_desktop.model.cache import KeyMask
from voxtral_desktop.model.decoder import DecoderState
from voxtral_desktop.model.encoder import EncoderState
from voxtral_desktop.synthetic.model import random_tensors, tiny_config
from voxtral_desktop.weights.names import expected_tensors

pytestmark = pytest.mark.gpu
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU: run `pytest -m gpu` on the device machine", allow_module_level=True)

CUDA = torch.device("cuda")
# Exactness in fp32 needs real fp32: cuDNN convolutions default to TF32 on Ampere and newer.
torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
SHAPES = [
    (4096 + 2048, 3072),
    (3072, 4096),
    (18432, 3072),
    (3072, 9216),
    (6144, 1280),
    (1280, 5120),
    (131072, 3072),
]


def q4(rows: int, cols: int, seed: int = 0) -> Q4Weight:
    g = torch.Generator().manual_seed(seed)
    return Q4Weight(quantize_q4_0(torch.randn(rows, cols, generator=g) / cols**0.5), (rows, cols))


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.mark.parametrize(("rows", "cols"), SHAPES)
def test_tinygemm_int4_matches_reference(rows: int, cols: int) -> None:
    w = q4(rows, cols)
    backend = CudaInt4Backend()
    prepared = backend.prepare(w, CUDA)
    for m in (1, 4, 39):
        x = torch.randn(m, cols, device=CUDA)
        ref = q4_linear_reference(x, w.to(CUDA))
        # bf16 activations and bf16 scales: ~3e-3 relative (PERFORMANCE notes measured 3.3e-3)
        assert rel_err(backend.linear(x, prepared, None), ref) < 1e-2


@pytest.mark.parametrize(("rows", "cols"), SHAPES)
def test_mma_q4_matches_reference(rows: int, cols: int) -> None:
    """bf16 activations, fp32 sums and scales, one rounding of the output to bf16: against the
    reference on the same bf16-rounded activations, the output rounding is all that differs."""
    w = q4(rows, cols, seed=3)
    backend = CudaMmaQ4Backend()
    prepared = backend.prepare(w, CUDA)
    ref_w = w.to(CUDA)
    for bias in (None, torch.randn(rows, device=CUDA), torch.randn(rows, device=CUDA).bfloat16()):
        for m in (1, 3, 4, 8, 9, 39, 64, 70):
            x = torch.randn(m, cols, device=CUDA).bfloat16()
            ref = q4_linear_reference(x.float(), ref_w, None if bias is None else bias.float())
            got = backend.linear(x, prepared, bias)
            assert got.dtype == torch.bfloat16 and got.shape == (m, rows)
            assert rel_err(got, ref) < 4e-3, (m, bias is None)
    x = torch.randn(2, 5, cols, device=CUDA)  # fp32 in, fp32 out, leading dims kept
    out = backend.linear(x, prepared, None)
    assert out.dtype == torch.float32 and out.shape == (2, 5, rows)
    assert rel_err(out, q4_linear_reference(x, ref_w)) < 1e-2


def test_every_mma_q4_variant_matches_reference() -> None:
    """Each (warps, unroll) a GPU's tuning table may pick (kernels/mma_q4.py: TUNED) computes the
    same product: unroll 1 and 3 leave a partial group of iterations at the end of the loop;
    unroll 0 stages every weight in shared memory (more than 48 KB of it for 16 warps of w2)."""
    from voxtral_desktop.kernels.mma_q4 import mma_linear

    for rows, cols in [(1280, 2048), (3072, 9216)]:
        w = q4(rows, cols, seed=6)
        prepared = CudaMmaQ4Backend().prepare(w, CUDA)
        for m in (1, 4):
            x = torch.randn(m, cols, device=CUDA).bfloat16()
            ref = q4_linear_reference(x.float(), w.to(CUDA))
            for warps in (4, 8, 16):
                for unroll in (0, 1, 2, 3, 4):
                    got = mma_linear(x, prepared, None, warps=warps, unroll=unroll)
                    assert rel_err(got, ref) < 4e-3, (rows, cols, m, warps, unroll)


@pytest.mark.parametrize("staged", [False, True])
@pytest.mark.parametrize(("dim", "inner", "bias"), [(3072, 4096, False), (1280, 2048, True)])
def test_mma_q4_norm_link_equals_add_then_norm(
    dim: int, inner: int, bias: bool, staged: bool, monkeypatch
) -> None:
    """The norm between two matmuls in their epilogues (q4_mma.cu's NORM_OUT, NORM_IN): the first
    leaves exactly `residual + linear(a)` and bf16(that * gamma) with the partial sums of squares;
    the next (plain and gated) equals rms_norm(new residual) * gamma through the plain kernel, up
    to where the bf16 rounding falls. Rows: one (a decoder step), 4 (an encoder step), 70 (two
    launches of 64 and 6 rows). `staged`: every matrix on the variants that stage their weights in
    shared memory (unroll 0), where NORM_IN's partial sums come first in the same buffer."""
    from voxtral_desktop.kernels import fused, mma_q4
    from voxtral_desktop.kernels.linear import interleave_gate_up
    from voxtral_desktop.kernels.mma_q4 import mma_linear, mma_linear_to_norm

    if staged:
        monkeypatch.setattr(
            mma_q4,
            "choose_variant",
            lambda n, k, nt, gated=False, device_index=None: (mma_q4.choose_warps(n // 16, k // 64, nt), 0),
        )

    backend = CudaMmaQ4Backend()
    wo, wq = backend.prepare(q4(dim, inner, seed=11), CUDA), backend.prepare(q4(1024, dim, seed=12), CUDA)
    w1, w3 = q4(2048, dim, seed=13), q4(2048, dim, seed=14)
    w13 = backend.prepare(Q4Weight(interleave_gate_up(w1.blocks, w3.blocks), (4096, dim)), CUDA)
    g = torch.Generator(device=CUDA).manual_seed(5)
    b = torch.randn(dim, device=CUDA, generator=g).bfloat16() if bias else None
    gamma = (1 + 0.2 * torch.randn(dim, device=CUDA, generator=g)).bfloat16()  # a norm's weight
    eps = 1e-5
    for rows in (1, 4, 70):
        a = torch.randn(rows, inner, device=CUDA, generator=g).bfloat16()
        residual = (4 * torch.randn(rows, dim, device=CUDA, generator=g)).bfloat16()
        new_residual, normed = mma_linear_to_norm(a, wo, b, residual, gamma, eps)
        want = (residual.float() + mma_linear(a, wo, b).float()).bfloat16()
        assert torch.equal(new_residual, want)
        assert torch.equal(normed.scaled, (want.float() * gamma.float()).bfloat16())
        squares = want.float().square().reshape(rows, dim // 16, 16).sum(-1)
        torch.testing.assert_close(normed.sums, squares, rtol=1e-5, atol=1e-4)
        rstd = torch.rsqrt(want.float().square().mean(-1, keepdim=True) + eps)
        plain = fused.rms_norm(want, gamma, eps)  # the norm kernel the link replaces
        for weight, gated in ((wq, False), (w13, True)):
            got = mma_linear(normed, weight, gated=gated).float()
            unlinked = mma_linear(plain, weight, gated=gated).float()
            assert rel_err(got, unlinked) < 1e-2, (rows, gated)
            if not gated:
                ref = q4_linear_reference(normed.scaled.float(), q4(1024, dim, seed=12).to(CUDA)) * rstd
                assert rel_err(got, ref) < 4e-3, rows


@pytest.mark.parametrize(("hidden", "cols"), [(9216, 3072), (5120, 1280)])
def test_mma_q4_gated_matches_reference(hidden: int, cols: int) -> None:
    """SwiGLU in the epilogue of the interleaved gate/up matmul: silu(x W1^T) * (x W3^T)."""
    from voxtral_desktop.kernels.linear import interleave_gate_up

    w1, w3 = q4(hidden, cols, seed=4), q4(hidden, cols, seed=5)
    backend = CudaMmaQ4Backend()
    pair = Q4Weight(interleave_gate_up(w1.blocks, w3.blocks), (2 * hidden, cols))
    prepared = backend.prepare(pair, CUDA)
    b1, b3 = torch.randn(hidden, device=CUDA), torch.randn(hidden, device=CUDA)
    pair_bias = interleave_gate_up(b1[:, None], b3[:, None])[:, 0]  # rows interleaved like W's
    for bias in (None, pair_bias, pair_bias.bfloat16()):
        for m in (1, 4, 8, 39, 70):
            x = torch.randn(m, cols, device=CUDA).bfloat16()
            b1m, b3m = (
                (None, None) if bias is None else (b1.to(bias.dtype).float(), b3.to(bias.dtype).float())
            )
            gate = q4_linear_reference(x.float(), w1.to(CUDA), b1m).bfloat16().float()
            up = q4_linear_reference(x.float(), w3.to(CUDA), b3m).bfloat16().float()
            got = backend.linear_gated(x, prepared, bias)
            assert got.shape == (m, hidden) and got.dtype == torch.bfloat16
            assert rel_err(got, torch.nn.functional.silu(gate) * up) < 8e-3, (m, bias is None)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_silu_of_an_interleaved_gate_up_pair_matches_torch(dtype: torch.dtype) -> None:
    """The gated pair's SwiGLU on CUDA (one Triton kernel) against the torch formula."""
    from voxtral_desktop.kernels import fused
    from voxtral_desktop.kernels.linear import GATE_ROWS, silu_gate_up

    y = (3 * torch.randn(2, 37, 2 * 1280, device=CUDA)).to(dtype)
    assert fused.enabled(y)
    got = silu_gate_up(y)
    fused.ENABLED = False
    try:
        want = silu_gate_up(y)
    finally:
        fused.ENABLED = True
    assert got.shape == (2, 37, 1280) and got.dtype == dtype
    tol = 1e-6 if dtype == torch.float32 else 8e-3  # one rounding of either side's fp32 value
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    pair = y.unflatten(-1, (-1, 2, GATE_ROWS))  # the interleaving itself: gate columns first
    gate, up = pair[..., 0, :].flatten(-2).float(), pair[..., 1, :].flatten(-2).float()
    torch.testing.assert_close(got.float(), torch.nn.functional.silu(gate) * up, rtol=tol, atol=tol)


def test_mma_q4_takes_activations_at_any_offset() -> None:
    """The kernel reads activations in 16-byte runs: a view that starts elsewhere (an odd bf16
    element, or 4 elements in) is copied first."""
    w = q4(6144, 1280, seed=6)
    backend = CudaMmaQ4Backend()
    prepared = backend.prepare(w, CUDA)
    flat = torch.randn(3 * 1280 + 8, device=CUDA).bfloat16()
    for offset, misalignment in ((1, 2), (4, 8)):
        x = flat[offset : offset + 3 * 1280].view(3, 1280)
        assert x.data_ptr() % 16 == misalignment
        ref = backend.linear(x.clone(), prepared, None)
        assert torch.equal(backend.linear(x, prepared, None), ref)


def test_mma_q4_compiles_without_a_cuda_toolkit(monkeypatch) -> None:
    """Pip-installed PyTorch has NVRTC but no CUDA_HOME: the kernel must not need the toolkit's
    headers (torch's own `_nvrtc_compile` raises there; ours passes only the architecture)."""
    import torch.utils.cpp_extension as cpp_extension

    from voxtral_desktop.kernels import mma_q4

    def no_toolkit(*args, **kwargs):
        raise OSError("CUDA_HOME environment variable is not set")

    monkeypatch.setattr(cpp_extension, "CUDA_HOME", None)
    monkeypatch.setattr(cpp_extension, "include_paths", no_toolkit)
    monkeypatch.setattr(cpp_extension, "_join_cuda_home", no_toolkit)
    variant = (8, 2, 2, False)  # a variant the other tests do not use: compiled here, now
    launch = mma_q4._compile((variant,), torch.cuda.current_device())[variant]
    w = q4(3072, 4096, seed=8)
    prepared = CudaMmaQ4Backend().prepare(w, CUDA)
    x = torch.randn(12, 4096, device=CUDA).bfloat16()
    y = torch.empty(12, 3072, device=CUDA, dtype=torch.bfloat16)
    args = (
        prepared.codes.data_ptr(),
        prepared.scales.data_ptr(),
        x.data_ptr(),
        y.data_ptr(),
        0,
        y.data_ptr(),
        12,
        3072,
        4096,
        *(0, 0, 0, 0, 0, 0.0),  # no norm link
    )
    launch(3072 // 16, 32 * 8, args, torch.cuda.current_device())
    assert rel_err(y, q4_linear_reference(x.float(), w.to(CUDA))) < 4e-3


def test_mma_q4_launches_from_a_thread_with_no_current_context() -> None:
    """The driver-API launch makes the primary context current where the thread has none."""
    import ctypes
    import threading

    w = q4(3072, 4096, seed=9)
    backend = CudaMmaQ4Backend()
    prepared = backend.prepare(w, CUDA)
    x = torch.randn(2, 4096, device=CUDA).bfloat16()
    expected = backend.linear(x, prepared, None)
    torch.cuda.synchronize()
    driver = torch.cuda._utils._get_gpu_runtime_library()
    result: dict = {}

    def run() -> None:
        try:
            assert driver.cuCtxSetCurrent(ctypes.c_void_p()) == 0  # no current context here
            result["out"] = backend.linear(x, prepared, None)
            torch.cuda.synchronize()
        except Exception as e:  # reported by the assertion below
            result["error"] = e

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert "error" not in result, result.get("error")
    assert torch.equal(result["out"], expected)


def test_mma_q4_in_cuda_graphs_equals_eager(tokenizer_small, monkeypatch) -> None:
    """The NVRTC kernel launched inside the streaming step's CUDA graphs gives the tokens of the
    same model run eagerly (every matrix of the tiny model with K % 64 == 0 takes the kernel).

    A graph's step attention reads the whole ring, an eager one the slots in use, so for one
    stream they split the keys among different numbers of programs, and bf16 sums in another
    order may flip a token of random weights (at token 35 of 60 here, on the H200). One
    program per head makes both sum alike, which leaves the kernel and the graphs to compare."""
    from voxtral_desktop.kernels import fused
    from voxtral_desktop.kernels.linear import Q4Linear

    monkeypatch.setattr(fused, "_programs_to_fill", lambda device: 1)

    config = tiny_config(decoder_vocab_size=VOCAB)
    tensors = _q4_tiny(config, 7)
    model = build_model(
        config, tensors, device=CUDA, dtype=torch.bfloat16, q4_backend=CudaMmaQ4Backend(), fuse=True
    )
    q4 = [m for m in model.modules() if isinstance(m, Q4Linear)]
    assert all(m.backend.name == "cuda-mma" for m in q4 if m.in_features % 64 == 0)
    assert sum(m.backend.name == "cuda-mma" for m in q4) >= 18
    assert sum(m.gated for m in q4) == config.encoder.n_layers + config.decoder.n_layers
    audio = speechlike(4.0, 7)
    runs = []
    for graphs in (False, True):
        session = StreamingSession(model, tokenizer_small, StreamConfig(480), cuda_graphs=graphs)
        assert (session.graph is not None) == graphs
        runs.append([t.id for t in transcribe_stream(session, [audio]).tokens])
    assert runs[0] == runs[1] and len(runs[0]) > 10


def test_programmatic_dependent_launch_changes_no_bit(tokenizer_small, monkeypatch) -> None:
    """On SM90+ the fused kernels and the mma kernel start while the kernel before them ends
    (kernels/pdl.py); each waits for it before touching its data, so a bf16 model gives the same
    logits bit for bit (eager) and the same tokens (CUDA graphs) with and without it."""
    import os

    from voxtral_desktop.kernels import pdl

    wanted = os.environ.get("VOXTRAL_NO_PDL", "") in ("", "0")
    hopper = torch.cuda.get_device_capability(CUDA) >= (9, 0)
    assert pdl.enabled(CUDA) == (hopper and wanted), (
        "PDL should be on on SM90+ (Triton 3.4+) unless turned off"
    )
    config = tiny_config(decoder_vocab_size=VOCAB)
    model = build_model(
        config,
        _q4_tiny(config, 11),
        device=CUDA,
        dtype=torch.bfloat16,
        q4_backend=CudaMmaQ4Backend(),
        fuse=True,
    )
    stream = StreamConfig(480)
    audio = speechlike(4.0, 11)
    from voxtral_desktop.audio.mel import log_mel
    from voxtral_desktop.engine.batch import padded_audio

    features = torch.from_numpy(log_mel(padded_audio(audio, stream)))[None].to(CUDA)
    tokens = [(7 * i) % VOCAB for i in range(20)]
    logits, ids = {}, {}
    for on in (True, False):
        monkeypatch.setattr(pdl, "ENABLED", on)
        logits[on] = _teacher_forced_logits(model, features, tokens, stream, kv_int8=True)
        session = StreamingSession(model, tokenizer_small, stream, cuda_graphs=True)
        ids[on] = [t.id for t in transcribe_stream(session, [audio]).tokens]
    assert torch.equal(logits[True], logits[False])
    assert ids[True] == ids[False] and len(ids[True]) > 10


def test_linked_norms_are_as_close_to_the_reference_as_norm_kernels(monkeypatch) -> None:
    """The RMS norms linked between the mma kernel's matmuls (kernels/norm_link.py: each layer's
    w2 adds the residual and readies the next layer's attention norm, whose wqkv applies it) are
    used for a step's rows (one decoder position, an encoder call of 8 mel frames), and the bf16
    model's logits stay as close to the fp32 dense reference as with the norm kernels.

    The links move where a bf16 rounding falls, so the two bf16 runs differ by about as much as
    either differs from fp32: with this model's weights (std 1/sqrt(dim)) the CPU measured 3.2 %
    for bf16 against fp32 and 2.2 % for the rounding moved; with std 0.5 the tiny model amplifies
    any rounding (29 % and 37 %), which is why these weights are smaller."""
    from voxtral_desktop.audio.mel import log_mel
    from voxtral_desktop.engine.batch import padded_audio
    from voxtral_desktop.kernels import linear

    config = tiny_config(decoder_vocab_size=VOCAB, encoder_n_layers=4, decoder_n_layers=4)
    tensors = _q4_tiny(config, 5, std=config.decoder.dim**-0.5)
    backend = CudaMmaQ4Backend()
    model = build_model(config, tensors, device=CUDA, dtype=torch.bfloat16, q4_backend=backend, fuse=True)
    links: list[int] = []
    to_norm = linear.Q4Linear.to_norm

    def counted(self, *args):
        links.append(self.out_features)
        return to_norm(self, *args)

    monkeypatch.setattr(linear.Q4Linear, "to_norm", counted)
    stream = StreamConfig(480)
    features = torch.from_numpy(log_mel(padded_audio(speechlike(3.0, 5), stream)))[None].to(CUDA)
    tokens = [(7 * i) % VOCAB for i in range(24)]
    logits, counts = {}, {}
    for on in (True, False):
        monkeypatch.setattr(linear, "NORM_LINKS", on)
        links.clear()
        logits[on] = _teacher_forced_logits(model, features, tokens, stream, encoder_chunk=8)
        counts[on] = list(links)
    # 3 links per call (4 layers): every encoder call of 4 frames, every decoder position after the
    # prompt (the prompt's 39 rows take the norm kernels)
    calls = -(-features.shape[-1] // 8) + len(tokens)
    assert counts[False] == [] and len(counts[True]) == 3 * calls
    assert set(counts[True]) == {config.encoder.dim, config.decoder.dim}
    ref_model = build_model(config, tensors, device=CUDA, dtype=torch.float32, q4_backend=None)
    ref = _teacher_forced_logits(ref_model, features, tokens, stream, encoder_chunk=8)
    worst = {on: max(rel_err(a, b) for a, b in zip(logits[on], ref, strict=True)) for on in (True, False)}
    apart = max(rel_err(a, b) for a, b in zip(logits[True], logits[False], strict=True))
    print(
        f"bf16 logits against fp32: linked {worst[True]:.4f}, norm kernels {worst[False]:.4f}"
        f" (max rel error); linked against norm kernels {apart:.4f}"
    )
    assert worst[True] < 5e-2 and worst[True] <= 1.5 * worst[False]


@pytest.mark.parametrize("backend", [CudaInt4Backend, TritonQ4Backend, CudaMmaQ4Backend])
def test_dense_form_of_the_q4_layouts(backend) -> None:
    """What `dense_weights` (file batches' encoder phase) uses: tinygemm's matrix recovered by
    the kernel itself (bf16 scales), the Triton layout's directly (exact)."""
    from voxtral_desktop.kernels.q4 import dequantize_q4_0

    w = q4(1280, 5120, seed=2)
    b = backend()
    dense = b.dequantize(b.prepare(w, CUDA), torch.float32)
    assert rel_err(dense, dequantize_q4_0(w.blocks.to(CUDA))) < (1e-2 if backend is CudaInt4Backend else 1e-7)
    if hasattr(b, "embed_rows"):
        ids = torch.tensor([0, 5, 1279], device=CUDA)
        assert torch.equal(b.embed_rows(b.prepare(w, CUDA), ids, torch.float32), dense[ids])


@pytest.mark.parametrize(("rows", "cols"), SHAPES)
def test_triton_q4_matches_reference(rows: int, cols: int) -> None:
    w = q4(rows, cols, seed=1)
    backend = TritonQ4Backend()
    prepared = backend.prepare(w, CUDA)
    bias = torch.randn(rows, device=CUDA)
    for m in (1, 3, 8, 39, 256):
        x = torch.randn(m, cols, device=CUDA)
        assert rel_err(backend.linear(x, prepared, bias), q4_linear_reference(x, w.to(CUDA), bias)) < 1e-5
        # bf16: the GEMV accumulates fp32 weights, the matmul bf16-rounded ones like the reference
        xb = x.bfloat16()
        assert (
            rel_err(backend.linear(xb, prepared, bias), q4_linear_reference(xb.float(), w.to(CUDA), bias))
            < 8e-3
        )
        gate_up = torch.randn(m, 2 * cols, device=CUDA)
        g, u = gate_up.chunk(2, dim=-1)
        ref = q4_linear_reference(torch.nn.functional.silu(g) * u, w.to(CUDA), bias)
        assert rel_err(backend.linear_swiglu(gate_up, prepared, bias), ref) < 1e-5


def _q4_tiny(config: ModelConfig, seed: int, std: float = 0.5) -> dict:
    t = random_tensors(config, seed=seed, std=std, dtype=torch.float32)
    return {s.name: Q4Weight(quantize_q4_0(t[s.name]), s.shape) if s.quantizable else t[s.name]
            for s in expected_tensors(config)}  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("B", "T", "H", "HKV", "D", "C", "S"),
    [
        (1, 1, 32, 8, 128, 300, 256),
        (1, 4, 32, 32, 64, 1005, 1005),
        (3, 1, 32, 8, 128, 8230, 8230),
        (2, 2, 4, 1, 64, 90, 77),
        (1, 39, 32, 8, 128, 8230, 200),  # prompt-sized: 156 rows per KV head, blocks of 64
        (2, 256, 32, 32, 64, 1005, 1005),  # an encoder chunk of a batch of files
        (160, 1, 32, 8, 128, 900, 900),  # a folder batch's step: the keys unsplit, no combine
    ],
)
@pytest.mark.parametrize("int8", [False, True])
@pytest.mark.parametrize("on_keys", [None, (32, 4, None), (16, 1, None)])
def test_fused_attention_matches_torch(
    monkeypatch,
    dtype: torch.dtype,
    B: int,
    T: int,
    H: int,
    HKV: int,
    D: int,
    C: int,
    S: int,
    int8: bool,
    on_keys: tuple | None,
) -> None:
    """Flash-decoding attention against the baddbmm/softmax/bmm path, over a strided cache view
    with a sliding-window mask (some key slices wholly masked); with an int8 cache, against the
    same path on the dequantised keys and values. `on_keys`: a split step's slices on
    attn_keys_kernel (`fused.SPLIT_ON_KEYS`)."""
    from voxtral_desktop.kernels import fused

    monkeypatch.setattr(fused, "SPLIT_ON_KEYS", on_keys)
    from voxtral_desktop.kernels.kv_int8 import LayerKV, quantize_kv
    from voxtral_desktop.model import layers

    g = torch.Generator(device=CUDA).manual_seed(1)
    q = torch.randn(B, H, T, D, device=CUDA, generator=g).to(dtype)
    kc = torch.randn(B, HKV, C, D, device=CUDA, generator=g).to(dtype)
    vc = torch.randn(B, HKV, C, D, device=CUDA, generator=g).to(dtype)

    def ring(n: int) -> LayerKV:
        if not int8:
            return LayerKV(kc[:, :, :n], vc[:, :, :n])
        (kq, ks), (vq, vs) = quantize_kv(kc), quantize_kv(vc)
        return LayerKV(kq[:, :, :n], vq[:, :, :n], ks[:, :, :n], vs[:, :, :n])

    def reference(kv: LayerKV, mask: KeyMask) -> torch.Tensor:
        fused.ENABLED = False
        try:
            k, v = kv.dense(torch.float32)
            return layers.attend(q.float(), LayerKV(k, v), mask)
        finally:
            fused.ENABLED = True

    # slots hold positions 0..S-1; some empty (-1) and some key slices wholly out of the window
    held = torch.arange(S, device=CUDA)
    held[S // 2 : S // 2 + 3] = -1
    window = max(T + 3, S // 3)
    mask = KeyMask(torch.arange(T, device=CUDA) + S - T, held, window, H // HKV)
    assert fused.attention_applies(q)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    got = fused.attention(q, ring(S), mask.positions, held, window)
    torch.testing.assert_close(got.float(), reference(ring(S), mask), **tol)

    # A ring filled only up to `filled`: slots past it are never read (NaN there would show).
    filled = S - S // 4
    kc[:, :, filled:] = float("nan")
    vc[:, :, filled:] = float("nan")
    mask2 = KeyMask(torch.arange(T, device=CUDA) + filled - T, held, window, H // HKV)
    got2 = fused.attention(q, ring(S), mask2.positions, held, window, torch.tensor(filled, device=CUDA))
    want2 = reference(ring(filled), KeyMask(mask2.positions, held[:filled], window, H // HKV))
    torch.testing.assert_close(got2.float(), want2, **tol)


def test_fused_kernels_address_caches_past_2_gib() -> None:
    """Cache offsets are 64-bit: in a cache view whose streams lie 2^30 + 2^20 int8 elements
    apart, stream 2 starts past 2^31 (256 streams x 600 s of decoder keys reach 1.97e9; Triton
    passes a stride below 2^31 as a 32-bit integer) and is written by the RoPE kernel and read
    by the attention (split and chunk paths) exactly as in a compact cache."""
    from voxtral_desktop.kernels import fused
    from voxtral_desktop.kernels.kv_int8 import LayerKV

    B, T, H, HKV, D, S = 3, 3, 8, 2, 128, 64

    def cache(stream_stride: int) -> LayerKV:
        def codes() -> torch.Tensor:
            buf = torch.zeros((B - 1) * stream_stride + HKV * S * D, dtype=torch.int8, device=CUDA)
            return buf.as_strided((B, HKV, S, D), (stream_stride, S * D, D, 1))

        scales = [torch.zeros(B, HKV, S, device=CUDA) for _ in range(2)]
        return LayerKV(codes(), codes(), *scales)

    far, compact = cache(2**30 + 2**20), cache(HKV * S * D)
    g = torch.Generator(device=CUDA).manual_seed(5)
    qkv = torch.randn(B, T, (H + 2 * HKV) * D, device=CUDA, generator=g).bfloat16()
    angles = torch.rand(T, D // 2, device=CUDA, generator=g)
    rotations = torch.polar(torch.ones_like(angles), angles)
    slots = torch.tensor([5, 6, 7], device=CUDA)
    q_far = fused.rope_qkv_to_cache(qkv, rotations, slots, far, H, HKV, D)
    q = fused.rope_qkv_to_cache(qkv, rotations, slots, compact, H, HKV, D)
    assert torch.equal(q_far, q)
    for name in ("k", "v", "k_scale", "v_scale"):
        a, b = getattr(far, name), getattr(compact, name)
        assert torch.equal(a, b) and b[2].abs().sum() > 0
    held = torch.full((S,), -1, device=CUDA)
    held[5:8] = torch.arange(T, device=CUDA)
    positions = torch.arange(T, device=CUDA)
    for rows in (q, q[:, :, -1:].contiguous()):  # 12 query rows per KV head (chunk), 4 (split)
        pos = positions[-rows.shape[2] :].contiguous()
        want = fused.attention(rows, compact, pos, held, S)
        assert want[2].abs().sum() > 0
        assert torch.equal(fused.attention(rows, far, pos, held, S), want)


def test_int8_kv_attention_error_is_small() -> None:
    """What an int8 cache costs: attention over 8,230 decoder-like keys, int8 against bf16, both
    against fp32 (relative L2 error of the output)."""
    from voxtral_desktop.kernels import fused
    from voxtral_desktop.kernels.kv_int8 import LayerKV, quantize_kv

    g = torch.Generator(device=CUDA).manual_seed(3)
    B, H, HKV, D, S = 1, 32, 8, 128, 8230
    q = torch.randn(B, H, 1, D, device=CUDA, generator=g) * 3
    k = torch.randn(B, HKV, S, D, device=CUDA, generator=g)
    v = torch.randn(B, HKV, S, D, device=CUDA, generator=g)
    seen = (torch.tensor([S], device=CUDA), torch.arange(S, device=CUDA), S + 1)  # every key
    want = fused.attention(q, LayerKV(k, v), *seen)
    bf16 = fused.attention(q.bfloat16(), LayerKV(k.bfloat16(), v.bfloat16()), *seen).float()
    (kq, ks), (vq, vs) = quantize_kv(k), quantize_kv(v)
    int8 = fused.attention(q.bfloat16(), LayerKV(kq, vq, ks, vs), *seen).float()
    err_bf16 = ((bf16 - want).norm() / want.norm()).item()
    err_int8 = ((int8 - want).norm() / want.norm()).item()
    print(f"attention output rel. L2 error vs fp32: bf16 cache {err_bf16:.4%}, int8 cache {err_int8:.4%}")
    assert err_int8 < 0.02


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(
    ("B", "T", "H", "HKV", "dim"),
    # 6 + 2 x 3 heads: the RoPE kernel's second block of 8 head vectors is partial
    [(1, 1, 32, 8, 3072), (1, 4, 32, 32, 1280), (3, 2, 4, 2, 1280), (2, 3, 6, 3, 1280)],
)
def test_fused_kernels_match_torch(dtype: torch.dtype, B: int, T: int, H: int, HKV: int, dim: int) -> None:
    """The Triton fusions against the torch ops they replace (fp32: to rounding only)."""
    from torch.nn import functional as F

    from voxtral_desktop.kernels import fused
    from voxtral_desktop.kernels.kv_int8 import LayerKV, quantize_kv
    from voxtral_desktop.kernels.positions import rope_tables
    from voxtral_desktop.model.layers import apply_rope

    assert fused.enabled(torch.zeros(1, device=CUDA))
    g = torch.Generator(device=CUDA).manual_seed(0)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    x = torch.randn(B, T, dim, device=CUDA, generator=g).to(dtype)
    r = torch.randn(B, T, dim, device=CUDA, generator=g).to(dtype)
    w = (1 + 0.1 * torch.randn(dim, device=CUDA, generator=g)).to(dtype)
    s = (1 + 0.1 * torch.randn(dim, device=CUDA, generator=g)).to(dtype)
    ref = F.rms_norm(x.float(), (dim,), w.float(), 1e-5)
    torch.testing.assert_close(fused.rms_norm(x, w, 1e-5).float(), ref, **tol)
    torch.testing.assert_close(fused.rms_norm(x, w, 1e-5, s).float(), ref * s.float(), **tol)
    xs, y = fused.add_rms_norm(x, r, w, 1e-5, s)
    torch.testing.assert_close(xs, x + r)
    ref = F.rms_norm((x + r).float(), (dim,), w.float(), 1e-5) * s.float()
    torch.testing.assert_close(y.float(), ref, **tol)
    # a bias left by the residual branch's matmul: exactly a separate add first
    rb = torch.randn(dim, device=CUDA, generator=g).to(dtype)
    xs_b, y_b = fused.add_rms_norm(x, r, w, 1e-5, s, rb)
    xs_sep, y_sep = fused.add_rms_norm(x, r + rb, w, 1e-5, s)
    assert torch.equal(xs_b, xs_sep) and torch.equal(y_b, y_sep)
    gu = torch.randn(B, T, 2 * dim, device=CUDA, generator=g).to(dtype)
    gate, up = gu.float().chunk(2, dim=-1)
    torch.testing.assert_close(fused.silu_mul(gu).float(), F.silu(gate) * up, **tol)
    # RoPE + cache write
    D, C = 128, 16
    qkv = torch.randn(B, T, (H + 2 * HKV) * D, device=CUDA, generator=g).to(dtype)
    positions = torch.arange(T, device=CUDA) + 9
    rot = rope_tables(positions, D, 1e6)
    slots = positions % C
    kc = torch.zeros(B, HKV, C, D, device=CUDA, dtype=dtype)
    vc = torch.zeros_like(kc)
    q = fused.rope_qkv_to_cache(qkv, rot, slots, LayerKV(kc, vc), H, HKV, D)
    qk_ref = apply_rope(qkv[..., : (H + HKV) * D].reshape(B, T, H + HKV, D), rot)
    q_ref, k_ref = qk_ref.split([H, HKV], dim=2)
    torch.testing.assert_close(q.float(), q_ref.transpose(1, 2).float(), **tol)
    torch.testing.assert_close(kc[:, :, slots].float(), k_ref.transpose(1, 2).float(), **tol)
    v_ref = qkv[..., (H + HKV) * D :].reshape(B, T, HKV, D).transpose(1, 2)
    torch.testing.assert_close(vc[:, :, slots], v_ref)
    # the projection's bias inside the kernel: a separate add first, to the last bit of fp32
    # (the two compiled variants may contract the rotation into FMAs differently) / one bf16 step
    qkv_bias = torch.randn(qkv.shape[-1], device=CUDA, generator=g).to(dtype)
    kb, vb = torch.zeros_like(kc), torch.zeros_like(vc)
    qb = fused.rope_qkv_to_cache(qkv, rot, slots, LayerKV(kb, vb), H, HKV, D, qkv_bias)
    ks_, vs_ = torch.zeros_like(kc), torch.zeros_like(vc)
    q_sep = fused.rope_qkv_to_cache((qkv + qkv_bias).contiguous(), rot, slots, LayerKV(ks_, vs_), H, HKV, D)
    same = dict(rtol=1e-6, atol=1e-6) if dtype == torch.float32 else dict(rtol=8e-3, atol=1e-6)
    torch.testing.assert_close(qb, q_sep, **same)
    torch.testing.assert_close(kb, ks_, **same)
    torch.testing.assert_close(vb, vs_, rtol=0, atol=0)  # values are not rotated: the add alone
    untouched = torch.ones(C, dtype=torch.bool, device=CUDA)
    untouched[slots] = False
    assert not kc[:, :, untouched].any() and not vc[:, :, untouched].any()
    # The same into an int8 ring: codes within one step of the reference quantisation of the
    # stored vectors (ties, the last bit of a division and, in bf16, the kernel quantising the
    # fp32 values before rounding may each move a code by one), the same scales up to that.
    k8, v8 = torch.zeros_like(kc, dtype=torch.int8), torch.zeros_like(vc, dtype=torch.int8)
    ks, vs = torch.zeros(B, HKV, C, device=CUDA), torch.zeros(B, HKV, C, device=CUDA)
    q8 = fused.rope_qkv_to_cache(qkv, rot, slots, LayerKV(k8, v8, ks, vs), H, HKV, D)
    torch.testing.assert_close(q8, q)
    for codes, scales, x in ((k8, ks, kc), (v8, vs, vc)):
        want_codes, want_scales = quantize_kv(x[:, :, slots])
        torch.testing.assert_close(
            scales[:, :, slots], want_scales, rtol=1e-6 if dtype == torch.float32 else 1e-2, atol=0
        )
        assert (codes[:, :, slots].int() - want_codes.int()).abs().max() <= 1
        assert not codes[:, :, untouched].any() and not scales[:, :, untouched].any()


@pytest.mark.parametrize(
    ("seed", "overrides", "delay_ms", "seconds", "deep"),
    [
        (0, {}, 480, 4.0, None),
        (1, {}, 80, 3.0, None),
        (2, {}, 2400, 3.0, None),
        # decoder capacity 300 + 38: one graph over the whole ring, which wraps
        (3, {"decoder_sliding_window": 300, "encoder_sliding_window": 40}, 480, 30.0, None),
        # ... and two, the keys split among more programs past 128 slots (fused.SPLIT_STEP_DEEP)
        (4, {"decoder_sliding_window": 300, "encoder_sliding_window": 40}, 480, 30.0, (128, 32)),
    ],
)
def test_graphs_fused_triton_fp32_tokens_equal_reference(
    seed, overrides, delay_ms, seconds, deep, tokenizer_small, monkeypatch
) -> None:
    from voxtral_desktop.kernels import fused

    if deep is not None:
        monkeypatch.setattr(fused, "SPLIT_STEP_DEEP", deep)
    config = tiny_config(decoder_vocab_size=VOCAB, **overrides)
    tensors = _q4_tiny(config, seed)
    stream = StreamConfig(delay_ms)
    audio = speechlike(seconds, seed)
    expected = reference_tokens(config, tensors, audio, stream)
    model = build_model(
        config, tensors, device=CUDA, dtype=torch.float32, q4_backend=TritonQ4Backend(), fuse=True
    )
    session = StreamingSession(model, tokenizer_small, stream, cuda_graphs=True)
    assert session.graph is not None
    if "decoder_sliding_window" in overrides:
        assert session.graph.buckets == ([338] if deep is None else [deep[0], 338])
    for chunk in (1280, 16000, None):
        chunks = [audio] if chunk is None else [audio[i : i + chunk] for i in range(0, len(audio), chunk)]
        assert [t.id for t in transcribe_stream(session, chunks).tokens] == expected


def test_batched_file_decoder_with_graphs_equals_sessions(tokenizer_small) -> None:
    config = tiny_config(decoder_vocab_size=VOCAB)
    tensors = _q4_tiny(config, 5)
    stream = StreamConfig(480)
    model = build_model(
        config, tensors, device=CUDA, dtype=torch.float32, q4_backend=TritonQ4Backend(), fuse=True
    )
    audios = [speechlike(s, i) for i, s in enumerate([3.0, 1.0, 6.5, 2.2, 0.3])]
    session = StreamingSession(model, tokenizer_small, stream)
    single = [[t.id for t in transcribe_stream(session, [a]).tokens] for a in audios]
    decoder = BatchDecoder(model, tokenizer_small, stream, batch=8, cuda_graphs=True)
    assert [[t.id for t in r.tokens] for r in decoder.transcribe(audios)] == single
    # Dense copies (a folder's many rows): graphs captured on them, replayed in later calls, and
    # the model's other users (a live session made afterwards) still on the Q4 kernels.
    dense = BatchDecoder(model, tokenizer_small, stream, batch=8, cuda_graphs=True, dense=True)
    for _ in range(2):
        assert [[t.id for t in r.tokens] for r in dense.transcribe(audios)] == single
    assert dense.dense and "dense" in dense.dense_reason
    from voxtral_desktop.kernels.linear import Q4Linear

    assert all(m.dense is None for m in model.modules() if isinstance(m, Q4Linear))
    assert model.tok_embeddings.dense is None
    live = StreamingSession(model, tokenizer_small, stream, cuda_graphs=True)
    assert [t.id for t in transcribe_stream(live, [audios[2]]).tokens] == single[2]


def test_a_bf16_batch_keeps_its_encoder_cache_in_bf16_where_it_fits(tokenizer_small) -> None:
    """On CUDA a bf16 model with int8 caches gives the encoder phase of a file batch of 32 or more
    streams a bf16 cache (faster at chunk shapes; bench/RESULTS.md, eleventh session) while the
    decoder's stays int8, and its audio vectors are closer to an fp32 model's than those made on
    an int8 cache."""
    from voxtral_desktop.audio.mel import log_mel_on
    from voxtral_desktop.engine.batch import padded_audio

    config = tiny_config(decoder_vocab_size=VOCAB)
    tensors = _q4_tiny(config, 6)
    stream = StreamConfig(480)
    audios = [speechlike(s, 50 + i) for i, s in enumerate([4.0, 2.5, 3.2])]
    vectors = {}
    arms = {
        "fp32": (torch.float32, False, None),
        "bf16": (torch.bfloat16, True, None),
        "int8": (torch.bfloat16, True, True),
    }
    for name, (dtype, kv_int8, encoder_int8) in arms.items():
        model = build_model(
            config, tensors, device=CUDA, dtype=dtype, q4_backend=TritonQ4Backend(), fuse=True
        )
        model.kv_int8 = kv_int8
        decoder = BatchDecoder(  # 32 rows: the encoder phase's groups are then large enough for bf16
            model, tokenizer_small, stream, batch=32, max_seconds=5.0, encoder_int8=encoder_int8
        )
        assert decoder.decoder.cache.quantized is kv_int8
        assert decoder.encoder.cache.quantized is (name == "int8")
        mels = [log_mel_on(padded_audio(a, stream), CUDA).to(dtype) for a in audios]
        with torch.no_grad():
            n = min(m.shape[1] for m in mels) // 8 - 1
            vectors[name] = decoder._encode(mels, n)[: len(audios)].float()  # rows past them: unset
        got = decoder.transcribe(audios)
        assert [len(t.tokens) > 0 for t in got] == [True] * len(audios)
        if name == "bf16":
            assert "faster than int8" in decoder.encoder_reason
    exact = vectors["fp32"]
    errors = {name: ((vectors[name] - exact).norm() / exact.norm()).item() for name in ("bf16", "int8")}
    assert errors["bf16"] < errors["int8"] < 0.05, errors


def _teacher_forced_logits(
    model,
    features: torch.Tensor,
    tokens: list[int],
    stream: StreamConfig,
    kv_int8: bool = False,
    encoder_chunk: int = 256,
) -> torch.Tensor:
    """`encoder_chunk`: mel frames a call of the encoder takes (8: a streaming step's)."""
    cfg = model.config
    enc = EncoderState.allocate(
        cfg.encoder, batch=1, max_chunk_frames=256, device=CUDA, dtype=model.dtype, kv_int8=kv_int8
    )
    dec = DecoderState.allocate(
        cfg.decoder, model.decoder.ada_scales(stream.n_delay_tokens, CUDA, model.dtype), batch=1,
        max_chunk=stream.n_prompt_tokens, device=CUDA, dtype=model.dtype, kv_int8=kv_int8,
    )  # fmt: skip
    with torch.no_grad():
        c = encoder_chunk
        audio = torch.cat([model.embed_audio(features[..., i : i + c].to(model.dtype), enc)
                           for i in range(0, features.shape[-1], c)], dim=1)  # fmt: skip
        n = stream.n_prompt_tokens
        out = [model.decode(torch.tensor([stream.prompt_ids()], device=CUDA), audio[:, :n], dec)]
        for p, tok in enumerate(tokens, start=n):
            out.append(model.decode(torch.tensor([[tok]], device=CUDA), audio[:, p : p + 1], dec))
    return torch.cat(out).float()  # [steps, V]


@pytest.mark.parametrize("backend", [CudaInt4Backend, TritonQ4Backend, CudaMmaQ4Backend])
def test_full_size_fast_path_logits_close_to_reference(backend) -> None:
    """bf16 + Q4 kernels (tinygemm int4, Triton) + fused projections, with bf16 and with int8 KV
    caches, vs fp32 dense dequantised weights, same inputs.

    Tolerance: relative L2 error of the logits < 5e-2 per step and the same top-1 at >= 90% of
    steps (random weights have no confident predictions, so near-ties flip; trained weights do
    far better). The measured values are recorded in bench/RESULTS.md.
    """
    from voxtral_desktop.audio.mel import log_mel
    from voxtral_desktop.benchmark import noise, random_q4_tensors
    from voxtral_desktop.engine.batch import padded_audio

    config = ModelConfig()
    tensors = random_q4_tensors(config)
    stream = StreamConfig(480)
    features = torch.from_numpy(log_mel(padded_audio(noise(3.0), stream)))[None].to(CUDA)
    steps = [1000 + 37 * i % 5000 for i in range(24)]
    fast = build_model(config, tensors, device=CUDA, dtype=torch.bfloat16, q4_backend=backend(), fuse=True)
    fast_logits = {kv: _teacher_forced_logits(fast, features, steps, stream, kv_int8=kv == "int8")
                   for kv in ("bf16", "int8")}  # fmt: skip
    del fast
    ref = build_model(config, tensors, device=CUDA, dtype=torch.float32, q4_backend=None)
    ref_logits = _teacher_forced_logits(ref, features, steps, stream)
    for kv, logits in fast_logits.items():
        errors = [rel_err(a, b) for a, b in zip(logits, ref_logits, strict=True)]
        agree = float((logits.argmax(-1) == ref_logits.argmax(-1)).float().mean())
        print(
            f"full-size fast path ({backend.name}, {kv} KV cache): max rel logit error {max(errors):.4f},"
            f" top-1 agreement {agree:.3f}"
        )
        assert max(errors) < 5e-2
        assert agree >= 0.9
        assert np.isfinite(logits.cpu().numpy()).all()


def test_log_mel_on_the_gpu_equals_the_cpu() -> None:
    """File batches compute their features on the GPU (cuFFT): the same frames as the CPU path."""
    from voxtral_desktop.audio.mel import log_mel, log_mel_on
    from voxtral_desktop.benchmark import noise

    audio = noise(20.0, seed=5)
    got = log_mel_on(audio, CUDA).cpu().numpy()
    np.testing.assert_allclose(got, log_mel(audio), rtol=0, atol=1e-4)


@pytest.mark.parametrize("kernels", [False, True])
def test_the_step_graphs_front_end_equals_the_cpu(monkeypatch, kernels: bool) -> None:
    """A streaming session's step graph computes each position's log-mel on the GPU from the
    samples of its 8 frames (read from pinned memory inside the graph): the frames the CPU
    computes, in a graph replayed on new samples too, by the three kernels of `mel_frames` and by
    the torch ops (a copy node, then the DFT matmul...). The spectrum is a matmul, not cuFFT, so
    the graph keeps working when torch's cuFFT plan cache is cleared (files of many lengths
    make it evict plans)."""
    from voxtral_desktop.kernels import mel_frames

    monkeypatch.setattr(mel_frames, "ENABLED", kernels)
    from voxtral_desktop.audio.mel import frames_to_log_mel, window_span
    from voxtral_desktop.benchmark import noise

    span = window_span(8)
    host = torch.zeros(2, span, pin_memory=True)
    out = torch.zeros(2, 128, 8, device=CUDA)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream):
        out.copy_(frames_to_log_mel(host, 8, device=CUDA))  # warm-up: the DFT basis is made outside capture
        with torch.cuda.graph(graph, stream=stream):
            out.copy_(frames_to_log_mel(host, 8, device=CUDA))
    torch.cuda.current_stream().wait_stream(stream)
    for seed in (1, 2):
        torch.backends.cuda.cufft_plan_cache.clear()
        rows = np.stack([noise(1.0, seed=10 * seed + i)[:span] for i in range(2)])
        host.numpy()[:] = rows
        graph.replay()
        torch.cuda.synchronize()
        expected = frames_to_log_mel(torch.from_numpy(rows), 8).numpy()
        np.testing.assert_allclose(out.cpu().numpy(), expected, rtol=0, atol=1e-5)
