"""The tensor-core Q4_0 layout (kernels/mma_q4.py) on the CPU: lossless, and in the order the
PTX ISA gives for the A operand of mma.m16n8k16 (the kernel itself runs in tests/test_gpu.py);
and the gated gate/up pair (SwiGLU in the gate/up matmul's epilogue) through the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from voxtral_desktop.kernels import mma_q4
from voxtral_desktop.kernels.int4pack import q4_0_codes
from voxtral_desktop.kernels.linear import (
    REFERENCE,
    Q4Linear,
    ReferenceQ4Backend,
    dense_weights,
    interleave_gate_up,
    silu_gate_up,
)
from voxtral_desktop.kernels.mma_q4 import (
    CudaMmaQ4Backend,
    MmaQ4,
    choose_warps,
    embed_rows,
    mma_supports,
    pack,
    unpack,
)
from voxtral_desktop.kernels.q4 import Q4Weight, dequantize_q4_0, q4_linear_reference, quantize_q4_0


def q4(rows: int, cols: int, seed: int = 0) -> Q4Weight:
    g = torch.Generator().manual_seed(seed)
    return Q4Weight(quantize_q4_0(torch.randn(rows, cols, generator=g)), (rows, cols))


def packed(w: Q4Weight) -> MmaQ4:
    return CudaMmaQ4Backend().prepare(w, torch.device("cpu"))


def test_pack_is_lossless() -> None:
    w = q4(48, 320, seed=1)
    codes, scales = q4_0_codes(w)
    p = packed(w)
    assert p.codes.shape == (3, 5, 32, 4) and p.codes.dtype == torch.int32
    assert p.scales.shape == (3, 5, 8, 4) and p.scales.dtype == torch.float16
    back_codes, back_scales = unpack(p)
    assert torch.equal(back_codes, codes) and torch.equal(back_scales, scales)
    # chunked packing gives the same words
    words, _ = pack(codes, scales, tiles_at_once=1)
    assert torch.equal(words, p.codes)


def test_dense_form_and_rows_equal_the_gguf_dequantisation() -> None:
    w = q4(64, 256, seed=2)
    p, backend = packed(w), CudaMmaQ4Backend()
    want = dequantize_q4_0(w.blocks)
    assert torch.equal(backend.dequantize(p, torch.float32), want)
    ids = torch.tensor([[0, 17, 63], [8, 31, 40]])
    assert torch.equal(embed_rows(p, ids, torch.float32), want[ids])
    assert embed_rows(p, ids, torch.bfloat16).dtype == torch.bfloat16
    tall = q4(16 * 300, 64, seed=9)  # dequantised 256 tiles at a time
    assert torch.equal(backend.dequantize(packed(tall), torch.float32), dequantize_q4_0(tall.blocks))


def _bf16_pair(word: np.uint32) -> tuple[float, float]:
    """A bf16x2 register as two floats (low half first)."""
    lo, hi = int(word) & 0xFFFF, int(word) >> 16
    as_f32 = np.array([lo << 16, hi << 16], dtype=np.uint32).view(np.float32)
    return float(as_f32[0]), float(as_f32[1])


def _slot_column(j: int, slot: int) -> int:
    """The column (within a 64-column iteration) that k slot `slot` of k-step j holds: lane t's
    slots 2t, 2t + 1, 2t + 8, 2t + 9 of k-steps 0-1 are columns 8t..8t+7, of k-steps 2-3 the
    same plus 32, so a lane's activations are two runs of 8 (q4_mma.cu's layout)."""
    t, k8, k1 = (slot % 8) // 2, slot // 8, slot % 2
    return 32 * (j >> 1) + 8 * t + 4 * (j & 1) + 2 * k8 + k1


def _a_fragment(word_of_lane, j: int) -> np.ndarray:
    """Decode every lane's word the way q4_mma.cu does ((w >> 4h) & 0x000F000F | 0x43004300,
    then - 136) and place the pairs where the PTX ISA puts the A fragment of m16n8k16 (bf16):
    register h of lane 4g + t holds row g + 8 (h & 1), k slots 2t + 8 (h >> 1) and + 1."""
    a = np.full((16, 16), np.nan)
    for lane in range(32):
        g, t = lane // 4, lane % 4
        word = word_of_lane(lane, j)
        for h in range(4):
            pair = ((word >> np.uint32(4 * h)) & np.uint32(0x000F000F)) | np.uint32(0x43004300)
            lo, hi = _bf16_pair(pair)
            row, slot = g + 8 * (h & 1), 2 * t + 8 * (h >> 1)
            a[row, slot], a[row, slot + 1] = lo - 136, hi - 136
    return a


def test_words_decode_to_the_mma_a_fragments() -> None:
    """The 16 x 16 A tiles assembled from the lanes' words hold the weights q - 8 of the rows
    and columns the layout gives each k slot."""
    w = q4(32, 128, seed=3)
    codes, _ = q4_0_codes(w)
    want = codes.to(torch.int64).numpy() - 8
    words = packed(w).codes.numpy().view(np.uint32)  # [tiles, iters, 32, 4]
    assert sorted(_slot_column(j, k) for j in range(4) for k in range(16)) == list(range(64))
    for tile in range(words.shape[0]):
        for it in range(words.shape[1]):
            for j in range(4):
                a = _a_fragment(lambda lane, j, tile=tile, it=it: words[tile, it, lane, j], j)
                cols = [64 * it + _slot_column(j, k) for k in range(16)]
                np.testing.assert_array_equal(a, want[16 * tile : 16 * tile + 16][:, cols])


def test_fragments_multiply_to_the_matmul() -> None:
    """The whole product as the kernel forms it, simulated: B fragments from the activations
    read as q4_mma.cu reads them (lane 4g + t: row g, the 16-byte runs at words 4t and 16 + 4t
    of the iteration; b0, b1 of k-step j are words 2 (j & 1) and + 1 of run j >> 1), placed
    where the PTX ISA puts them (b0 = k slots 2t, 2t + 1 of column g; b1 = slots 2t + 8, + 9),
    multiplied with the A fragments, summed per 32-column group and scaled. Equal to x W^T in
    the columns of real rows."""
    w = q4(32, 192, seed=7)
    p = packed(w)
    words = p.codes.numpy().view(np.uint32)
    scales = p.scales.to(torch.float64).numpy()  # [tile, iter, g, (g0, g1, g+8 g0, g+8 g1)]
    x = torch.randn(5, 192).bfloat16()
    xw = x.view(torch.int16).numpy().astype(np.int64) & 0xFFFF  # bf16 bits
    xw = (xw[:, 0::2] | (xw[:, 1::2] << 16)).astype(np.uint32)  # [rows, 96] 32-bit words
    got = np.zeros((5, 32))
    for tile in range(2):
        for it in range(3):
            sums = np.zeros((2, 16, 8))  # [group, tile row, activation row]
            for j in range(4):
                a = _a_fragment(lambda lane, j, tile=tile, it=it: words[tile, it, lane, j], j)
                b = np.zeros((16, 8))
                for lane in range(32):
                    g, t = lane // 4, lane % 4
                    row = g if g < 5 else 0  # lanes past the last row read row 0; never stored
                    run = 32 * it + 16 * (j >> 1) + 4 * t
                    b0, b1 = xw[row, run + 2 * (j & 1)], xw[row, run + 2 * (j & 1) + 1]
                    b[2 * t, g], b[2 * t + 1, g] = _bf16_pair(b0)
                    b[2 * t + 8, g], b[2 * t + 9, g] = _bf16_pair(b1)
                sums[j >> 1] += a @ b
            for r in range(16):
                d = scales[tile, it, r % 8, 2 * (r // 8) : 2 * (r // 8) + 2]  # the row's two groups
                got[:, 16 * tile + r] += d[0] * sums[0, r, :5] + d[1] * sums[1, r, :5]
    want = x.double() @ dequantize_q4_0(w.blocks).double().T
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-12)


def test_scales_are_where_the_kernel_reads_them() -> None:
    """Lane g reads the uint2 at [tile, iter, g]: halves (g, group 2 iter), (g, 2 iter + 1),
    (g + 8, 2 iter), (g + 8, 2 iter + 1) of the tile's rows."""
    w = q4(32, 192, seed=4)
    _, scales = q4_0_codes(w)
    s = packed(w).scales
    for tile in range(2):
        for it in range(3):
            for g in range(8):
                r = 16 * tile + g
                want = [
                    scales[r, 2 * it],
                    scales[r, 2 * it + 1],
                    scales[r + 8, 2 * it],
                    scales[r + 8, 2 * it + 1],
                ]
                assert torch.equal(s[tile, it, g], torch.stack(want))


def test_supported_shapes_and_warps() -> None:
    assert mma_supports((6144, 3072)) and mma_supports((1280, 5120))
    assert not mma_supports((40, 64)) and not mma_supports((64, 96))
    with pytest.raises(ValueError, match="K % 64"):
        pack(torch.zeros(64, 96, dtype=torch.uint8), torch.zeros(64, 3, dtype=torch.float16))
    for tiles, iters, nt in [(80, 20, 1), (80, 80, 8), (8192, 48, 1), (384, 144, 4), (1, 1, 1)]:
        warps = choose_warps(tiles, iters, nt)
        assert warps in (4, 8, 16) and warps * nt <= 64
        assert warps == 4 or warps <= iters


def test_variant_choice_tuned_table_and_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GPU's measured table wins over the heuristic, a sweep's override over both; a gated pair
    and a plain matrix of the same shape are told apart; every table entry is a variant the
    kernel can run for its shape (unroll 0: the weights staged in shared memory)."""
    heuristic = (choose_warps(1280 // 16, 2048 // 64, 1), mma_q4.UNROLL)
    assert mma_q4.choose_variant(1280, 2048, 1) == heuristic  # no device: the heuristic
    table = mma_q4.TUNED["NVIDIA H200"]
    monkeypatch.setattr(mma_q4, "_tuned_for", lambda index: table)
    assert mma_q4.choose_variant(1280, 2048, 1, False, 0) == table[(1280, 2048, 1, False)]
    assert mma_q4.choose_variant(1280, 2048, 2, False, 0) == (choose_warps(80, 32, 2), mma_q4.UNROLL)
    assert mma_q4.choose_variant(10240, 1280, 1, True, 0) == table[(10240, 1280, 1, True)]
    assert mma_q4.choose_variant(10240, 1280, 1, False, 0) == (choose_warps(640, 20, 1), mma_q4.UNROLL)
    monkeypatch.setitem(mma_q4.OVERRIDES, (1280, 2048, 1, False), (4, 3))
    assert mma_q4.choose_variant(1280, 2048, 1, False, 0) == (4, 3)
    for entries in mma_q4.TUNED.values():
        for (n, k, nt, _gated), (warps, unroll) in entries.items():
            assert mma_supports((n, k)) and warps in (4, 8, 16) and warps * nt <= 64
            assert (warps == 4 or warps <= k // 64) and 0 <= unroll <= 8
            # unroll 0 stages a warp's weights (576 bytes an iteration) and the rows in shared memory
            staged = warps * -(-(k // 64) // warps) * 576 + 2 * 8 * nt * k
            assert unroll or mma_q4.staged_shared_bytes(warps, k, 8 * nt) == staged < 200 * 1024


def test_staged_launch_sizes_its_shared_memory_or_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """The launch of a staged variant (unroll 0) asks for its weights' and rows' shared memory
    (after NORM_IN's partial sums), and where the GPU has not that much per block it launches the
    register variant instead. The kernels are stand-ins that record their launches."""
    launches: list[tuple] = []

    class Recorder:
        static_shared = 8192  # what the 16-warp kernel's own arrays take

        def __init__(self, variant: tuple) -> None:
            self.variant = variant

        def __call__(self, grid, threads, args, device_index, programmatic=False, shared=0) -> None:
            launches.append((self.variant, grid, threads, shared))

    monkeypatch.setattr(mma_q4, "_kernel", lambda *variant: Recorder(variant))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(mma_q4, "_tuned_for", lambda index: {})
    w = packed(q4(64, 3072, seed=4))  # 4 tiles of 48 iterations: 3 a warp at 16 warps
    x = torch.randn(4, 3072).bfloat16()
    per_block = {"per_block": 227 * 1024}
    monkeypatch.setattr(mma_q4, "_shared_per_block", lambda index: per_block["per_block"])
    mma_q4.mma_linear(x, w, warps=16, unroll=0)
    staged = 16 * 3 * 576 + 2 * 4 * 3072
    assert mma_q4.staged_shared_bytes(16, 3072, 4) == staged
    # (warps, n-tiles, unroll, gated, device, norm), blocks, threads, dynamic shared bytes
    assert launches.pop() == ((16, 1, 0, False, 0, 0), 4, 512, staged)
    normed = mma_q4.NormedRows(x, torch.ones(4, 3072 // 16), 1e-5)
    mma_q4.mma_linear(normed, w, warps=16, unroll=0)  # the partial sums first: 4 rows x 192
    assert launches.pop() == ((16, 1, 0, False, 0, mma_q4.NORM_IN), 4, 512, 4 * 4 * 192 + staged)
    per_block["per_block"] = 8192 + staged - 1  # one byte short
    mma_q4.mma_linear(x, w, warps=16, unroll=0)
    assert launches.pop() == ((16, 1, mma_q4.UNROLL, False, 0, 0), 4, 512, 0)


def test_the_kernel_needs_cuda() -> None:
    """On a machine with no GPU the backend is never chosen (kernels/select.py): asking for it
    is a clear error, not a crash inside NVRTC."""
    from voxtral_desktop.errors import ConfigError
    from voxtral_desktop.kernels.select import choose_q4_backend

    with pytest.raises(ConfigError, match="mma"):
        choose_q4_backend(torch.device("cpu"), "mma")


class GatedReference(ReferenceQ4Backend):
    """The exact reference with the gated gate/up contract of the mma backend (in torch)."""

    name = "reference-gated"
    gates_swiglu = True

    def linear_gated(self, x, prepared, bias):
        return silu_gate_up(self.linear(x, prepared, bias))


def test_interleaved_gate_up_rows_and_silu() -> None:
    gate, up = torch.arange(16).reshape(16, 1), 100 + torch.arange(16).reshape(16, 1)
    rows = interleave_gate_up(gate, up).flatten().tolist()
    assert rows == [*range(8), *range(100, 108), *range(8, 16), *range(108, 116)]
    y = torch.randn(3, 32)
    g, u = (
        y.unflatten(-1, (2, 2, 8))[..., 0, :].flatten(-2),
        y.unflatten(-1, (2, 2, 8))[..., 1, :].flatten(-2),
    )
    torch.testing.assert_close(silu_gate_up(y), torch.nn.functional.silu(g) * u, rtol=0, atol=0)


def test_gated_q4_linear_equals_silu_of_the_pair() -> None:
    """Q4Linear(gated) on a backend without `linear_gated` (and in `dense_weights`) computes the
    full pair and gates it: silu(x W1^T) * (x W3^T)."""
    w1, w3 = q4(32, 64, seed=5), q4(32, 64, seed=6)
    pair = Q4Weight(interleave_gate_up(w1.blocks, w3.blocks), (64, 64))
    x = torch.randn(5, 64)
    want = torch.nn.functional.silu(q4_linear_reference(x, w1)) * q4_linear_reference(x, w3)
    gated = Q4Linear(pair, None, REFERENCE, gated=True)
    torch.testing.assert_close(gated(x), want, rtol=1e-6, atol=1e-6)
    with dense_weights(gated, torch.float32):
        torch.testing.assert_close(gated(x), want, rtol=1e-6, atol=1e-6)


def test_model_with_gated_gate_up_gives_the_same_tokens(tokenizer_small) -> None:
    """build_model interleaves w1/w3 for a `gates_swiglu` backend; in fp32 the tokens are those
    of the plain fused model (the same sums, gated in the epilogue's place)."""
    from test_parity import VOCAB, speechlike

    from voxtral_desktop.config import StreamConfig
    from voxtral_desktop.engine.session import StreamingSession
    from voxtral_desktop.engine.transcribe import transcribe_stream
    from voxtral_desktop.model.build import build_model
    from voxtral_desktop.synthetic.model import random_tensors, tiny_config
    from voxtral_desktop.weights.names import expected_tensors

    config = tiny_config(decoder_vocab_size=VOCAB)
    t = random_tensors(config, seed=8, dtype=torch.float32)
    tensors = {s.name: Q4Weight(quantize_q4_0(t[s.name]), s.shape) if s.quantizable else t[s.name]
               for s in expected_tensors(config)}  # fmt: skip
    audio = speechlike(3.0, 8)
    runs = []
    for backend in (REFERENCE, GatedReference()):
        model = build_model(config, tensors, device=torch.device("cpu"), dtype=torch.float32,
                            q4_backend=backend, fuse=True)  # fmt: skip
        gated = [m for m in model.modules() if isinstance(m, Q4Linear) and m.gated]
        assert len(gated) == (
            0 if backend is REFERENCE else config.encoder.n_layers + config.decoder.n_layers
        )
        session = StreamingSession(model, tokenizer_small, StreamConfig(480))
        runs.append([tok.id for tok in transcribe_stream(session, [audio]).tokens])
    assert runs[0] == runs[1] and len(runs[0]) > 10


class _FakeNvrtc:
    """Stands in for libnvrtc's C API (ctypes calls): records the options, hands out a cubin."""

    def __init__(self, compile_rc: int = 0, size_rc: int = 0) -> None:
        self.compile_rc, self.size_rc, self.options, self.destroyed = compile_rc, size_rc, None, False

    def nvrtcCreateProgram(self, prog, source, name, n_headers, headers, include_names):
        assert n_headers == 0 and headers is None  # no header sources handed to NVRTC either
        return 0

    def nvrtcCompileProgram(self, prog, n, options):
        self.options = [options[i].decode() for i in range(n)]
        return self.compile_rc

    def nvrtcGetProgramLogSize(self, prog, size):
        size._obj.value = 6
        return 0

    def nvrtcGetProgramLog(self, prog, log):
        log.value = b"oops!"
        return 0

    def nvrtcGetCUBINSize(self, prog, size):
        size._obj.value = 4
        return self.size_rc

    def nvrtcGetCUBIN(self, prog, buffer):
        buffer.raw = b"\x7fELF"
        return 0

    def nvrtcDestroyProgram(self, prog):
        self.destroyed = True
        return 0

    class _ErrorString:  # const char* nvrtcGetErrorString(nvrtcResult): restype is set by the caller
        restype = None

        def __call__(self, rc):
            return b"NVRTC_ERROR_INVALID_INPUT"

    nvrtcGetErrorString = _ErrorString()


def test_nvrtc_gets_only_the_architecture() -> None:
    """No include folders (they need CUDA_HOME, which pip-installed PyTorch lacks): q4_mma.cu
    includes nothing, so the target architecture is the one option passed."""
    from voxtral_desktop.kernels.mma_q4 import SOURCE, nvrtc_cubin

    source = SOURCE.read_text(encoding="utf-8")
    assert "#include" not in source
    lib = _FakeNvrtc()
    assert nvrtc_cubin(source, "sm_90", library=lib) == b"\x7fELF"
    assert lib.options == ["--gpu-architecture=sm_90"] and lib.destroyed


def test_nvrtc_failure_says_why() -> None:
    from voxtral_desktop.kernels.mma_q4 import SOURCE, nvrtc_cubin

    lib = _FakeNvrtc(compile_rc=6)
    with pytest.raises(RuntimeError, match=r"could not compile q4_mma\.cu for sm_80:\n(.|\n)*oops!"):
        nvrtc_cubin(SOURCE.read_text(encoding="utf-8"), "sm_80", library=lib)
    assert lib.destroyed


def test_an_nvrtc_api_error_is_named() -> None:
    from voxtral_desktop.kernels.mma_q4 import SOURCE, nvrtc_cubin

    lib = _FakeNvrtc(size_rc=4)
    with pytest.raises(RuntimeError, match="NVRTC cubin size: NVRTC_ERROR_INVALID_INPUT"):
        nvrtc_cubin(SOURCE.read_text(encoding="utf-8"), "sm_90", library=lib)
    assert lib.destroyed
