"""Int8 KV caches (kernels/kv_int8.py) on the CPU: the reference quantisation, the cache that
stores it, and a whole model reading it (the fused CUDA kernels are checked against the same
reference in tests/test_gpu.py)."""

from __future__ import annotations

import pytest
import torch
from test_fast_paths import q4_tensors
from test_parity import CPU, VOCAB, speechlike

from voxtral_desktop.config import StreamConfig
from voxtral_desktop.engine.session import StreamingSession
from voxtral_desktop.engine.transcribe import transcribe_stream
from voxtral_desktop.errors import ConfigError
from voxtral_desktop.kernels.kv_int8 import LayerKV, dequantize_kv, quantize_kv
from voxtral_desktop.kernels.linear import REFERENCE
from voxtral_desktop.kernels.select import choose_kv_int8
from voxtral_desktop.model.build import build_model
from voxtral_desktop.model.cache import KVCache
from voxtral_desktop.model.decoder import DecoderState
from voxtral_desktop.model.encoder import EncoderState
from voxtral_desktop.synthetic.model import tiny_config


def test_quantisation_error_is_at_most_half_a_step() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 50, 128, generator=g) * torch.rand(3, 4, 50, 1, generator=g) * 10
    x[0, 0, 0] = 0.0  # an all-zero vector: scale 0, codes 0, no NaN
    codes, scale = quantize_kv(x)
    assert codes.dtype == torch.int8 and scale.shape == x.shape[:-1] and scale.dtype == torch.float32
    assert int(codes.abs().max()) == 127  # the largest entry of each vector maps to +-127
    back = dequantize_kv(codes, scale, torch.float32)
    assert torch.all((back - x).abs() <= scale[..., None] / 2 * (1 + 1e-5) + 1e-12)
    assert not back[0, 0, 0].any() and float(scale[0, 0, 0]) == 0.0
    assert dequantize_kv(codes, scale, torch.bfloat16).dtype == torch.bfloat16


def test_quantised_cache_stores_reads_and_restores() -> None:
    def cache(quantized: bool) -> KVCache:
        return KVCache(
            n_layers=2, batch=2, n_kv_heads=3, head_dim=16, window=6, capacity=8,
            device=CPU, dtype=torch.float32, quantized=quantized,
        )  # fmt: skip

    full, int8 = cache(False), cache(True)
    assert int8.k.dtype == torch.int8 and int8.k.element_size() * 4 == full.k.element_size()
    g = torch.Generator().manual_seed(1)
    for n in (3, 1, 4, 2):  # wraps the 8-slot ring
        k, v = torch.randn(2, 2, 3, n, 16, generator=g).unbind(0)
        for c in (full, int8):
            c.begin(n)
        for layer in range(2):
            ref = full.write(layer, k, v)
            got = int8.write(layer, k, v)
            assert got.quantized and not ref.quantized
            gk, gv = got.dense(torch.float32)
            assert torch.allclose(gk, ref.k, atol=float(got.k_scale.max()) / 2 + 1e-6)
            assert torch.allclose(gv, ref.v, atol=float(got.v_scale.max()) / 2 + 1e-6)
            want_codes, want_scales = quantize_kv(k)
            assert torch.equal(int8.layer(layer).k[:, :, int8.slots], want_codes)
            assert torch.equal(int8.layer(layer).k_scale[:, :, int8.slots], want_scales)
    fresh = cache(True)
    two = KVCache(n_layers=2, batch=2, n_kv_heads=3, head_dim=16, window=6, capacity=8, device=CPU,
                  dtype=torch.float32, quantized=True)  # fmt: skip
    two.begin(5)
    for layer in range(2):
        two.write(layer, *torch.randn(2, 2, 3, 5, 16, generator=g).unbind(0))
    fresh.restore(two.snapshot())
    assert torch.equal(fresh.k, two.k) and torch.equal(fresh.v_scale, two.v_scale)
    assert fresh.next_pos == 5


def test_choice_of_kv_cache() -> None:
    assert choose_kv_int8(torch.device("cuda"), torch.bfloat16) is True
    assert choose_kv_int8(torch.device("cuda"), torch.float32) is False  # fp32 stays exact
    assert choose_kv_int8(CPU, torch.float32) is False
    assert choose_kv_int8(CPU, torch.float32, "int8") is True
    assert choose_kv_int8(torch.device("cuda"), torch.bfloat16, "full") is False
    with pytest.raises(ConfigError, match="unknown KV cache"):
        choose_kv_int8(CPU, torch.float32, "fp8")
    layer = LayerKV(torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4))
    assert not layer.quantized and layer.dense(torch.bfloat16)[0].dtype == torch.bfloat16


def test_model_logits_with_an_int8_cache_stay_close() -> None:
    """Teacher-forced on a well-conditioned tiny model (see test_fast_paths.py): the same inputs
    with full and int8 caches, encoder and decoder, past the encoder's window (wrapping rings)."""
    config = tiny_config(
        decoder_vocab_size=VOCAB, encoder_dim=128, decoder_dim=128, encoder_sliding_window=32
    )
    model = build_model(
        config, q4_tensors(config, 23, std=128**-0.5), device=CPU, dtype=torch.float32, q4_backend=REFERENCE
    )
    stream = StreamConfig(480)
    mel = torch.randn(1, 128, 8 * 60, generator=torch.Generator().manual_seed(4)) * 0.5

    def logits(kv_int8: bool) -> torch.Tensor:
        enc = EncoderState.allocate(
            config.encoder, batch=1, max_chunk_frames=40, device=CPU, dtype=torch.float32, kv_int8=kv_int8
        )
        ada = model.decoder.ada_scales(stream.n_delay_tokens, CPU, torch.float32)
        dec = DecoderState.allocate(
            config.decoder, ada, batch=1, max_chunk=39, device=CPU, dtype=torch.float32, kv_int8=kv_int8
        )
        assert enc.cache.quantized == dec.cache.quantized == kv_int8
        with torch.no_grad():
            audio = torch.cat(
                [model.embed_audio(mel[..., i : i + 40], enc) for i in range(0, 480, 40)], dim=1
            )
            out = [model.decode(torch.tensor([stream.prompt_ids()]), audio[:, :39], dec)]
            for p in range(39, 59):
                out.append(model.decode(torch.tensor([[1000 + p]]), audio[:, p : p + 1], dec))
        return torch.cat(out)

    assert config.encoder.sliding_window < 240  # the encoder ring wraps: its window is in play
    full, int8 = logits(False), logits(True)
    errors = (int8 - full).norm(dim=-1) / full.norm(dim=-1)
    assert 0 < float(errors.max()) < 2e-2
    assert float((int8.argmax(-1) == full.argmax(-1)).float().mean()) >= 0.9


def test_a_session_on_int8_caches_follows_the_full_one(tokenizer_small) -> None:
    """The whole streaming session (silent prefix snapshot, prompt, steps) on int8 caches gives
    nearly the tokens of full caches on a well-conditioned tiny model."""
    config = tiny_config(
        decoder_vocab_size=VOCAB, encoder_dim=128, decoder_dim=128, encoder_sliding_window=32
    )
    model = build_model(
        config, q4_tensors(config, 23, std=128**-0.5), device=CPU, dtype=torch.float32, q4_backend=REFERENCE
    )
    audio = speechlike(4.0, seed=8)

    def tokens(kv_int8: bool) -> list[int]:
        model.kv_int8 = kv_int8
        session = StreamingSession(model, tokenizer_small, StreamConfig(480))
        assert session.state.decoder.cache.quantized == session.state.encoder.cache.quantized == kv_int8
        return [
            t.id
            for t in transcribe_stream(
                session, [audio[i : i + 3000] for i in range(0, len(audio), 3000)]
            ).tokens
        ]

    full, int8 = tokens(False), tokens(True)
    assert len(full) == len(int8) > 40
    assert sum(a == b for a, b in zip(full, int8, strict=True)) >= 0.9 * len(full)


@pytest.mark.parametrize(("gib", "want"), [(4, "triton-q4_0"), (80, "cuda-int4")])
def test_auto_kernel_keeps_the_q4_0_bytes_on_a_small_gpu(gib: int, want: str, monkeypatch) -> None:
    """`auto` on CUDA: tinygemm (fastest), but the Triton kernel over the Q4_0 bytes (0.5 GB less)
    on a GPU under 6 GiB. The GPU's properties are stood in for: the decision is host logic."""
    from types import SimpleNamespace

    from voxtral_desktop.kernels import select, triton_q4

    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda d: SimpleNamespace(total_memory=gib * 1024**3)
    )
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d: (9, 0))
    monkeypatch.setattr(triton_q4, "triton_available", lambda: True)
    backend = select.choose_q4_backend(torch.device("cuda"), "auto")
    assert backend is not None and backend.name == want
    assert select.choose_q4_backend(torch.device("cuda"), "int4").name == "cuda-int4"
