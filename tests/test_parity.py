"""Our greedy tokens must equal HF transformers' VoxtralRealtimeForConditionalGeneration.

Tiny random models (std 0.5, so they do not repeat one token) in fp32 on the CPU, with the
exact (reference) Q4 kernel. The audio is rounded to int16 on both sides, as HF's offline
processor does.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hf_reference import hf_features, hf_greedy_tokens, hf_model, pad_audio

from voxtral_desktop.config import StreamConfig
from voxtral_desktop.engine.session import StreamingSession
from voxtral_desktop.engine.transcribe import transcribe_stream
from voxtral_desktop.model.build import build_model
from voxtral_desktop.synthetic.model import random_tensors, tiny_config

CPU = torch.device("cpu")
VOCAB = 3000  # the size of the `tokenizer_small` fixture: 1000 control + 2000 text ids


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Noise bursts with pauses and a few tones, rounded to int16 like a WAV file."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    envelope = (np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) > -0.2).astype(np.float32)
    signal = 0.2 * rng.standard_normal(n) + 0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t)
    audio = (signal * envelope).astype(np.float32)
    return (np.round(np.clip(audio, -1, 1) * 32767) / 32767).astype(np.float32)


def reference_tokens(config, tensors, audio: np.ndarray, stream: StreamConfig) -> list[int]:
    model = hf_model(config, tensors)
    return hf_greedy_tokens(model, hf_features(pad_audio(audio, stream)), stream)


def our_session(config, tensors, tokenizer, stream: StreamConfig) -> StreamingSession:
    model = build_model(config, tensors, device=CPU, dtype=torch.float32)
    return StreamingSession(model, tokenizer, stream)


def our_tokens(session: StreamingSession, audio: np.ndarray, chunk: int | None = None) -> list[int]:
    chunks = [audio] if chunk is None else [audio[i : i + chunk] for i in range(0, len(audio), chunk)]
    return [t.id for t in transcribe_stream(session, chunks).tokens]


@pytest.mark.parametrize(
    ("seed", "shape"),
    [
        (0, {}),
        (1, {}),
        (2, dict(encoder_n_layers=3, decoder_n_layers=3, decoder_n_kv_heads=4)),
        (
            3,
            dict(encoder_dim=96, encoder_n_heads=6, decoder_dim=128, decoder_n_heads=8, decoder_n_kv_heads=2),
        ),
    ],
)
def test_tokens_equal_reference(seed: int, shape: dict, tokenizer_small) -> None:
    config = tiny_config(decoder_vocab_size=VOCAB, **shape)
    tensors = random_tensors(config, seed=seed, dtype=torch.float32)
    stream = StreamConfig(480)
    audio = speechlike(4.0, seed)
    expected = reference_tokens(config, tensors, audio, stream)
    got = our_tokens(our_session(config, tensors, tokenizer_small, stream), audio)
    assert len(set(expected)) > 3, "the random model must not repeat one token, or this test proves little"
    assert got == expected


@pytest.mark.parametrize("delay_ms", [80, 480, 960, 2400])
def test_every_delay_equals_reference(delay_ms: int, tokenizer_small) -> None:
    config = tiny_config(decoder_vocab_size=VOCAB)
    tensors = random_tensors(config, seed=11, dtype=torch.float32)
    stream = StreamConfig(delay_ms)
    audio = speechlike(3.0, 5)
    expected = reference_tokens(config, tensors, audio, stream)
    assert our_tokens(our_session(config, tensors, tokenizer_small, stream), audio) == expected


def test_past_the_encoder_window(tokenizer_small) -> None:
    """20 s of audio is 1000+ encoder frames: the 750-frame sliding window must match."""
    config = tiny_config(decoder_vocab_size=VOCAB)
    assert config.encoder.sliding_window == 750
    tensors = random_tensors(config, seed=4, dtype=torch.float32)
    stream = StreamConfig(480)
    audio = speechlike(20.0, 4)
    expected = reference_tokens(config, tensors, audio, stream)
    assert our_tokens(our_session(config, tensors, tokenizer_small, stream), audio, chunk=16000) == expected


def test_past_both_windows_scaled_down(tokenizer_small) -> None:
    """Windows of 40 encoder frames and 24 decoder positions, so both caches wrap many times."""
    config = tiny_config(encoder_sliding_window=40, decoder_sliding_window=24)
    tensors = random_tensors(config, seed=5, dtype=torch.float32)
    stream = StreamConfig(480)
    audio = speechlike(8.0, 6)
    expected = reference_tokens(config, tensors, audio, stream)
    session = our_session(config, tensors, tokenizer_small, stream)
    assert our_tokens(session, audio, chunk=3000) == expected
    # The caches are fixed-size ring buffers, whatever the stream length.
    assert session.state.decoder.cache.capacity == 24 + stream.n_prompt_tokens - 1
    assert session.state.encoder.cache.k.shape[3] == session.state.encoder.cache.capacity


def test_any_chunking_gives_the_same_tokens(tokenizer_small) -> None:
    config = tiny_config(decoder_vocab_size=VOCAB)
    tensors = random_tensors(config, seed=7, dtype=torch.float32)
    stream = StreamConfig(480)
    audio = speechlike(2.5, 8)
    session = our_session(config, tensors, tokenizer_small, stream)
    whole = our_tokens(session, audio)
    assert whole == reference_tokens(config, tensors, audio, stream)
    for chunk in (1, 159, 1280, 7919):
        assert our_tokens(session, audio, chunk=chunk) == whole, chunk
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(len(audio), size=40, replace=False))
    assert [t.id for t in transcribe_stream(session, np.split(audio, cuts)).tokens] == whole


def test_reset_starts_over_without_reloading(tokenizer_small) -> None:
    config = tiny_config(decoder_vocab_size=VOCAB)
    tensors = random_tensors(config, seed=9, dtype=torch.float32)
    session = our_session(config, tensors, tokenizer_small, StreamConfig(480))
    a, b = speechlike(2.0, 1), speechlike(2.0, 2)
    first = our_tokens(session, a)
    our_tokens(session, b)
    assert our_tokens(session, a) == first
    # a new stream starts from the silent prefix: its positions encoded and decoded when the
    # session was made (the prompt's last one, which emits the first token, is never among them)
    from voxtral_desktop.engine.batch import SILENT_POSITIONS

    session.reset()
    st = session.state
    assert st.n_embedded == st.n_decoded == st.decoder.cache.next_pos == SILENT_POSITIONS == 31
    assert not st.audio_pending and st.last_token == -1


def test_padding_matches_mistral_common() -> None:
    from mistral_common.tokens.tokenizers.audio import AudioConfig, AudioEncoder, SpecialAudioIDs

    for delay_ms in (80, 480, 2400):
        cfg = AudioConfig(
            sampling_rate=16000,
            frame_rate=12.5,
            encoding_config=_encoding_config(),
            transcription_delay_ms=delay_ms,
            streaming_n_left_pad_tokens=32,
            streaming_look_ahead_ms=2.5,
            streaming_look_back_ms=52.5,
            transcription_format="streaming",
        )
        encoder = AudioEncoder(
            cfg,
            SpecialAudioIDs(
                audio=24, begin_audio=25, streaming_pad=32, text_to_audio=None, audio_to_text=None
            ),
        )
        for n in (1, 1279, 1280, 16000, 23456):
            left, right = encoder._get_streaming_pad(n, delay_ms)
            ours = pad_audio(np.ones(n, np.float32), StreamConfig(delay_ms))
            assert (left, right) == (int(np.argmax(ours > 0)), len(ours) - left - n)


def _encoding_config():
    from mistral_common.tokens.tokenizers.audio import AudioSpectrogramConfig

    return AudioSpectrogramConfig(num_mel_bins=128, hop_length=160, window_size=400)
