"""The speed paths on the CPU: batched file decoding, fused projections, the int4 kernel, the bench."""

from __future__ import annotations

import pytest
import torch
from test_parity import CPU, VOCAB, our_tokens, speechlike

from voxtral_desktop.audio.mel import log_mel_on
from voxtral_desktop.config import StreamConfig
from voxtral_desktop.engine.batch import BatchDecoder, padded_audio
from voxtral_desktop.engine.session import StreamingSession
from voxtral_desktop.kernels.int4pack import CpuInt4Backend
from voxtral_desktop.kernels.linear import REFERENCE, Q4Linear
from voxtral_desktop.kernels.q4 import Q4Weight, q4_linear_reference, quantize_q4_0
from voxtral_desktop.model.build import build_model
from voxtral_desktop.model.decoder import DecoderState
from voxtral_desktop.model.encoder import EncoderState
from voxtral_desktop.synthetic.model import random_tensors, tiny_config
from voxtral_desktop.weights.names import expected_tensors


def q4_tensors(config, seed: int, std: float = 0.5) -> dict:
    t = random_tensors(config, seed=seed, std=std, dtype=torch.float32)
    return {s.name: Q4Weight(quantize_q4_0(t[s.name]), s.shape) if s.quantizable else t[s.name]
            for s in expected_tensors(config)}  # fmt: skip


@pytest.mark.parametrize(
    ("max_seconds", "encoder_batch", "encoder_chunk"),
    # the default encoder phase; and groups of 3 rows in chunks of 4 positions, so that the
    # silent prefix (31 positions, made once and copied into every row) takes 8 chunks
    [(8.0, None, None), (600.0, None, None), (8.0, 3, 4)],
)
def test_batch_decoder_equals_one_session_per_file(
    max_seconds: float, encoder_batch: int | None, encoder_chunk: int | None, tokenizer_small
) -> None:
    config = tiny_config(decoder_vocab_size=VOCAB, decoder_sliding_window=40)
    tensors = q4_tensors(config, 21)
    model = build_model(config, tensors, device=CPU, dtype=torch.float32, fuse=True)
    stream = StreamConfig(480)
    audios = [speechlike(s, 30 + i) for i, s in enumerate([2.0, 0.4, 6.0, 3.3])]
    session = StreamingSession(model, tokenizer_small, stream)
    expected = [our_tokens(session, a) for a in audios]
    decoder = BatchDecoder(
        model, tokenizer_small, stream, batch=6, max_seconds=max_seconds,
        encoder_batch=encoder_batch, encoder_chunk=encoder_chunk,
    )  # fmt: skip
    got = decoder.transcribe(audios)
    assert [[t.id for t in r.tokens] for r in got] == expected
    assert [[t.id for t in r.tokens] for r in decoder.transcribe(audios[::-1])] == expected[::-1]
    assert [r.text for r in got] == [tokenizer_small.decode(e) for e in expected]
    with pytest.raises(ValueError):
        decoder.transcribe([speechlike(max_seconds + 3, 0)] if max_seconds < 100 else [])


def test_the_encoder_cache_of_a_batch_follows_encoder_int8(tokenizer_small) -> None:
    """`encoder_int8` sets the encoder phase's cache apart from the model's caches: with the compute
    dtype the audio vectors are exactly those of a model whose caches are all in that dtype, and
    with int8 they differ (by the codes' rounding) while the decoder cache stays int8 either way."""
    config = tiny_config(decoder_vocab_size=VOCAB)
    tensors = q4_tensors(config, 23)
    model = build_model(config, tensors, device=CPU, dtype=torch.float32, fuse=True)
    stream = StreamConfig(480)
    audios = [speechlike(s, 40 + i) for i, s in enumerate([2.0, 3.1])]
    vectors = {}
    for kv_int8, encoder_int8 in ((False, None), (True, False), (True, True)):
        model.kv_int8 = kv_int8
        decoder = BatchDecoder(
            model, tokenizer_small, stream, batch=2, max_seconds=4.0, encoder_int8=encoder_int8
        )
        assert decoder.encoder.cache.quantized is (encoder_int8 is True)
        assert decoder.decoder.cache.quantized is kv_int8
        assert decoder.encoder_reason == (
            "float32 (as the model's caches)" if encoder_int8 is None
            else f"{'int8' if encoder_int8 else 'float32'} (asked for)"
        )  # fmt: skip
        mels = [log_mel_on(padded_audio(a, stream), CPU) for a in audios]
        with torch.no_grad():
            vectors[kv_int8, encoder_int8] = decoder._encode(mels, min(m.shape[1] for m in mels) // 8 - 1)
    plain = vectors[False, None]
    assert torch.equal(vectors[True, False], plain)
    error = ((vectors[True, True] - plain).norm() / plain.norm()).item()
    assert 0 < error < 0.05, error


@pytest.mark.parametrize("kv_int8", [False, True])
def test_encoder_cache_bytes_are_what_allocate_takes(kv_int8: bool) -> None:
    config = tiny_config(decoder_vocab_size=VOCAB)
    state = EncoderState.allocate(
        config.encoder, batch=3, max_chunk_frames=12, device=CPU, dtype=torch.bfloat16, kv_int8=kv_int8
    )
    cache = state.cache
    held = [cache.k, cache.v] + ([cache.k_scale, cache.v_scale] if kv_int8 else [])
    assert sum(t.nbytes for t in held if t is not None) == EncoderState.cache_bytes(
        config.encoder, batch=3, max_chunk_frames=12, dtype=torch.bfloat16, kv_int8=kv_int8
    )


def test_choose_encoder_int8_prefers_the_compute_dtype_where_it_fits(monkeypatch) -> None:
    from types import SimpleNamespace

    from voxtral_desktop.engine import batch

    gib = 2**30
    cuda = SimpleNamespace(kv_int8=True, device=torch.device("cuda"), dtype=torch.bfloat16)
    monkeypatch.setattr(batch, "_free_bytes", lambda device: 20 * gib)
    assert batch.choose_encoder_int8(cuda, 64, 14 * gib) == (
        False, "bfloat16 (14.0 GiB; faster than int8 at chunk shapes)"
    )  # fmt: skip
    assert batch.choose_encoder_int8(cuda, 64, 19 * gib) == (
        True, "int8 (a bfloat16 cache needs 19.0 GiB + 2 GiB spare, 20.0 GiB free)"
    )  # fmt: skip
    assert batch.choose_encoder_int8(cuda, 8, gib) == (True, "int8 (8 streams at a time; bfloat16 from 32)")
    cpu = SimpleNamespace(kv_int8=True, device=CPU, dtype=torch.float32)
    assert batch.choose_encoder_int8(cpu, 64, gib) == (True, "int8 (as the model's caches)")
    full = SimpleNamespace(kv_int8=False, device=torch.device("cuda"), dtype=torch.bfloat16)
    assert batch.choose_encoder_int8(full, 64, gib) == (False, "bfloat16 (as the model's caches)")


def test_fused_projections_change_nothing(tokenizer_small) -> None:
    config = tiny_config(decoder_vocab_size=VOCAB)
    tensors = q4_tensors(config, 22)
    stream, audio = StreamConfig(480), speechlike(3.0, 22)
    plain = build_model(config, tensors, device=CPU, dtype=torch.float32)
    fused = build_model(config, tensors, device=CPU, dtype=torch.float32, fuse=True)
    assert fused.decoder.layers[0].attention.wq is None and fused.decoder.layers[0].attention.wqkv is not None
    assert our_tokens(StreamingSession(fused, tokenizer_small, stream), audio) == our_tokens(
        StreamingSession(plain, tokenizer_small, stream), audio
    )


@pytest.mark.parametrize(("rows", "cols"), [(3072, 3072), (1024, 3072), (3072, 9216), (2048, 1280), (64, 32)])
def test_cpu_int4_kernel_matches_reference(rows: int, cols: int) -> None:
    g = torch.Generator().manual_seed(rows + cols)
    w = Q4Weight(quantize_q4_0(torch.randn(rows, cols, generator=g) / cols**0.5), (rows, cols))
    x = torch.randn(5, cols, generator=g)
    layer = Q4Linear(w, None, CpuInt4Backend())
    assert layer.backend.name == "cpu-int4"
    ref = q4_linear_reference(x, w)
    # bf16 activations and bf16 scales: ~3e-3 relative error (measured 2.4e-3 to 3.3e-3)
    assert float((layer(x) - ref).norm() / ref.norm()) < 1e-2


def test_shapes_the_int4_kernel_cannot_take_fall_back_to_the_reference() -> None:
    w = Q4Weight(quantize_q4_0(torch.randn(40, 96)), (40, 96))  # 40 rows: not a multiple of 16
    layer = Q4Linear(w, None, CpuInt4Backend())
    assert layer.backend is REFERENCE
    x = torch.randn(2, 96)
    assert torch.equal(layer(x), q4_linear_reference(x, w))


def test_cpu_int4_model_logits_stay_close_on_a_well_conditioned_model() -> None:
    """Teacher-forced: the same inputs through the exact and the int4 (bf16) paths.

    std 1/sqrt(dim) keeps the random model from amplifying rounding (with std 0.5 a random model
    is chaotic: bf16 rounding alone moves its logits by 10-30 %, so only exact paths can match
    its greedy tokens; see the notes in bench/RESULTS.md).
    """
    config = tiny_config(decoder_vocab_size=VOCAB, encoder_dim=128, decoder_dim=128)
    tensors = q4_tensors(config, 23, std=128**-0.5)
    stream = StreamConfig(480)
    mel = torch.randn(1, 128, 8 * 60) * 0.5

    def logits(backend) -> torch.Tensor:
        model = build_model(config, tensors, device=CPU, dtype=torch.float32, q4_backend=backend, fuse=True)
        enc = EncoderState.allocate(
            config.encoder, batch=1, max_chunk_frames=240, device=CPU, dtype=torch.float32
        )
        ada = model.decoder.ada_scales(stream.n_delay_tokens, CPU, torch.float32)
        dec = DecoderState.allocate(
            config.decoder, ada, batch=1, max_chunk=39, device=CPU, dtype=torch.float32
        )
        with torch.no_grad():
            audio = model.embed_audio(mel, enc)
            out = [model.decode(torch.tensor([stream.prompt_ids()]), audio[:, :39], dec)]
            for p in range(39, 59):
                out.append(model.decode(torch.tensor([[1000 + p]]), audio[:, p : p + 1], dec))
        return torch.cat(out)

    exact, fast = logits(REFERENCE), logits(CpuInt4Backend())
    errors = (fast - exact).norm(dim=-1) / exact.norm(dim=-1)
    assert float(errors.max()) < 2e-2
    assert float((fast.argmax(-1) == exact.argmax(-1)).float().mean()) >= 0.9


def test_bench_runs_end_to_end_on_a_tiny_model() -> None:
    from voxtral_desktop.benchmark import format_table, run_bench

    lines: list[str] = []
    result = run_bench(
        device="cpu",
        steps=20,
        full_window_steps=5,
        file_seconds=4.0,
        batch_files=(3, 2),
        batch_seconds=2.0,
        segment_seconds=1.5,
        segment_batch=3,
        folder_batch=2,
        config=tiny_config(decoder_sliding_window=60),  # full after 98 positions
        report=lines.append,
    )
    assert result.steps == 20 and result.step_ms["p50"] > 0 and result.step_ms["p99"] >= result.step_ms["p50"]
    assert result.full_window_steps == 5 and result.step_full_window_ms["p50"] > 0
    assert result.file_rtfx > 0 and result.load_s >= 0 and not result.pdl  # a CUDA feature
    assert result.batch_files == (3, 2) and len(result.batch_rtfx) == 2 and min(result.batch_rtfx) > 0
    assert result.file_segmented_rtfx > 0 and result.segment_batch == 3
    assert result.folder_segmented_rtfx > 0 and result.folder_batch == 2
    assert any("the folder through transcribe" in line for line in lines)
    table = format_table(result)
    assert (
        "streaming step (20 steps)" in table
        and "the same, decoder window full (5 steps)" in table
        and "folder batch 3 x 2 s" in table
        and "folder batch 2 x 2 s" in table
    )
    assert "GPU" not in table  # no GPU memory rows off a GPU, rather than zeros
    assert any("streaming step" in line for line in lines)


def test_bench_rates_keep_their_digits_below_one() -> None:
    """A slow device's real-time factors stay readable (0.04x used to print as 0.0x)."""
    from voxtral_desktop.benchmark import _rate

    assert _rate(0.0437) == 0.0437 and _rate(0.00051234) == 0.000512
    assert _rate(106.64) == 106.6 and _rate(1.04) == 1.0


@pytest.mark.parametrize("backend", [REFERENCE, CpuInt4Backend()])
def test_dense_weights_inside_the_context_only(backend) -> None:
    """`dense_weights` swaps Q4 matmuls for the backend's dense matrix (the int4 one recovered
    through the kernel itself) and restores them; outputs agree with the Q4 kernel."""
    from voxtral_desktop.kernels.linear import dense_weights
    from voxtral_desktop.kernels.q4 import dequantize_q4_0

    g = torch.Generator().manual_seed(3)
    w = Q4Weight(quantize_q4_0(torch.randn(64, 2048, generator=g) / 45), (64, 2048))
    layer = Q4Linear(w, torch.randn(64, generator=g), backend)
    x = torch.randn(7, 2048, generator=g)
    kernel_out = layer(x)
    with dense_weights(torch.nn.Sequential(layer), torch.float32):
        assert layer.dense is not None
        # the reference dequantises exactly; the int4 form rounds the f16 scale to bf16
        tol = 0 if backend is REFERENCE else 1e-2
        assert float((layer.dense - dequantize_q4_0(w.blocks)).norm() / layer.dense.norm()) <= tol
        dense_out = layer(x)
    assert layer.dense is None
    assert float((dense_out - kernel_out).norm() / kernel_out.norm()) < (
        1e-6 if backend is REFERENCE else 2e-2
    )


def test_normed_rows_reference_is_the_rms_norm() -> None:
    """What a linked norm carries to the next matmul (kernels/norm_link.py): x * gamma and x's
    partial sums of squares; its dense form is rms_norm(x) * gamma up to one bf16 rounding, and a
    Q4 matrix that cannot take the link multiplies that dense form."""
    from torch.nn import functional as F

    from voxtral_desktop.kernels.norm_link import normed_rows_reference

    g = torch.Generator().manual_seed(3)
    x = (3 * torch.randn(5, 2, 64, generator=g)).bfloat16()
    gamma = (1 + 0.2 * torch.randn(64, generator=g)).bfloat16()
    rows = normed_rows_reference(x, gamma, 1e-5)
    assert rows.shape == x.shape and rows.sums.shape == (10, 4)
    want = F.rms_norm(x.float(), (64,), gamma.float(), 1e-5)
    got = rows.dense()
    assert got.dtype == torch.bfloat16 and got.shape == x.shape
    assert float((got.float() - want).abs().max()) <= 2 * float(want.abs().max()) * 2**-8
    w = Q4Weight(quantize_q4_0(torch.randn(32, 64, generator=g)), (32, 64))
    module = Q4Linear(w, None, REFERENCE)
    assert not module.links_norm  # the reference backend has no `linear_to_norm`
    assert torch.equal(module(rows), module(got))
