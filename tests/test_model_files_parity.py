"""The model files, end to end: what `convert` writes, loaded by the engine, equals the reference.

The Q4_0 GGUF must give exactly the tokens HF transformers gives when fed the dequantised
weights; the native bf16 directory the tokens HF gives with those bf16 weights (computed in fp32).
Shards of the GGUF load the same model.
"""

from __future__ import annotations

import numpy as np
import pytest
from hf_reference import hf_features, hf_greedy_tokens, hf_model, pad_audio
from test_parity import speechlike

from voxtral_desktop.config import StreamConfig
from voxtral_desktop.engine.engine import Engine
from voxtral_desktop.engine.transcribe import transcribe_file, transcribe_stream
from voxtral_desktop.synthetic.tiny import make_tiny_model
from voxtral_desktop.weights.checkpoint import open_checkpoint
from voxtral_desktop.weights.convert import convert_native_to_gguf


def write_wav(path, audio: np.ndarray) -> None:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.round(audio * 32767).astype("<i2").tobytes())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("tiny")
    return make_tiny_model(out, fmt="both", seed=3)


@pytest.mark.parametrize("fmt", ["gguf", "native"])
def test_model_file_tokens_equal_reference(fmt: str, tiny: dict, tmp_path) -> None:
    stream = StreamConfig(480)
    audio = speechlike(3.0, 40)
    checkpoint = open_checkpoint(tiny[fmt])
    expected = hf_greedy_tokens(
        hf_model(checkpoint.config, checkpoint.tensors), hf_features(pad_audio(audio, stream)), stream
    )
    assert len(set(expected)) > 3
    engine = Engine.load(tiny[fmt], device="cpu", kernel="reference")
    session = engine.session(stream)
    # from memory, and through a WAV file decoded by PyAV (int16 samples: the same audio)
    assert [t.id for t in transcribe_stream(session, [audio]).tokens] == expected
    write_wav(tmp_path / "a.wav", audio)
    assert [t.id for t in transcribe_file(session, tmp_path / "a.wav").tokens] == expected


def test_shards_load_the_same_model(tiny: dict, tmp_path) -> None:
    shards = convert_native_to_gguf(tiny["native"], tmp_path / "shards", shard_size=50_000)
    assert len(shards) > 3
    audio = speechlike(2.0, 41)
    whole = Engine.load(tiny["gguf"], device="cpu", kernel="reference").session(StreamConfig(480))
    split = Engine.load(tmp_path / "shards", device="cpu", kernel="reference").session(StreamConfig(480))
    assert transcribe_stream(split, [audio]).tokens == transcribe_stream(whole, [audio]).tokens
