"""Decoding files with PyAV: formats, channel mixing, resampling, chunking and user errors.

Fixtures are encoded at test time with PyAV's bundled encoders (no files in the repository).
"""

from __future__ import annotations

import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from voxtral_desktop.audio.decode import audio_duration, iter_audio, load_audio
from voxtral_desktop.config import SAMPLE_RATE
from voxtral_desktop.errors import AudioError, VoxtralError

SR = SAMPLE_RATE
DURATION = 1.5  # seconds of test tone
FREQ = 440.0
AMP = 0.5


# --- fixture writers ---------------------------------------------------------------------------


def sine(rate: int, seconds: float = DURATION, freq: float = FREQ, amp: float = AMP) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)  # [n]


def _add_audio(
    container: av.container.OutputContainer, codec: str, rate: int, channels: int
) -> av.AudioStream:
    # The native vorbis encoder is flagged experimental; allow it for the fixture.
    options = {"strict": "experimental"} if codec == "vorbis" else {}
    stream = container.add_stream(codec, rate=rate, options=options)
    stream.layout = {1: "mono", 2: "stereo"}[channels]
    return stream


def _encode_audio(
    container: av.container.OutputContainer, stream: av.AudioStream, planes: np.ndarray
) -> None:
    """Encode planes [channels, n] float32 (PyAV converts to the codec's sample format and
    frame size)."""
    rate, layout = stream.rate, stream.layout.name
    step = 1024
    for start in range(0, planes.shape[1], step):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(planes[:, start : start + step]), format="fltp", layout=layout
        )
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def _add_video(container: av.container.OutputContainer, codec: str) -> av.VideoStream:
    stream = container.add_stream(codec, rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    return stream


def _encode_video(container: av.container.OutputContainer, stream: av.VideoStream, seconds: float) -> None:
    for k in range(round(seconds * 25)):
        frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), k * 7 % 256, np.uint8), format="rgb24")
        frame.pts = k
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def write_media(
    path: Path,
    audio: list[tuple[str, int, np.ndarray]],
    video: str | None = None,
    seconds: float = DURATION,
) -> Path:
    """Write `path` with an optional video stream FIRST, then the audio streams in order:
    each (codec, rate, planes [channels, n])."""
    with av.open(str(path), "w") as container:
        # Every stream must exist before the first packet is muxed.
        vstream = _add_video(container, video) if video else None
        astreams = [_add_audio(container, codec, rate, planes.shape[0]) for codec, rate, planes in audio]
        for stream, (_, _, planes) in zip(astreams, audio, strict=True):
            _encode_audio(container, stream, planes)
        if vstream is not None:
            _encode_video(container, vstream, seconds)
    return path


def write_wav_s16(path: Path, samples: np.ndarray, rate: int) -> Path:
    """A plain PCM WAV via the standard library; samples [n] or [n, channels] in [-1, 1]."""
    frames = np.round(np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1 if frames.ndim == 1 else frames.shape[1])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames.tobytes())
    return path


def has_encoder(name: str) -> bool:
    try:
        av.Codec(name, "w")
    except Exception:
        return False
    return True


def dominant_freq(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * SR / len(x))


def amplitude(x: np.ndarray) -> float:
    return float(np.sqrt(2 * np.mean(x.astype(np.float64) ** 2)))


def middle(x: np.ndarray) -> np.ndarray:
    """1 s of steady state, away from encoder priming and resampler edges."""
    return x[SR // 8 : SR // 8 + SR]


# --- formats -----------------------------------------------------------------------------------

# (file name, codec, rate, channels, video codec or None, lossless)
FORMATS = [
    ("pcm.wav", "pcm_s16le", 44_100, 2, None, True),
    ("lossless.flac", "flac", 48_000, 1, None, True),
    ("opus.ogg", "libopus", 48_000, 2, None, False),
    ("vorbis.ogg", "vorbis", 44_100, 2, None, False),
    ("lame.mp3", "libmp3lame", 44_100, 1, None, False),
    ("aac.m4a", "aac", 44_100, 2, None, False),
    ("movie.mp4", "aac", 48_000, 2, "mpeg4", False),
    ("clip.webm", "libopus", 48_000, 1, "libvpx", False),
    ("movie.mkv", "flac", 22_050, 2, "mpeg4", True),
]


@pytest.mark.parametrize(("name", "codec", "rate", "channels", "video", "lossless"), FORMATS)
def test_decodes_format(
    tmp_path: Path, name: str, codec: str, rate: int, channels: int, video: str | None, lossless: bool
) -> None:
    for needed in [codec] + ([video] if video else []):
        if not has_encoder(needed):
            pytest.skip(f"the bundled ffmpeg has no {needed} encoder")
    planes = np.stack([sine(rate)] * channels)  # [channels, n]
    try:
        path = write_media(tmp_path / name, [(codec, rate, planes)], video=video)
    except av.FFmpegError as exc:  # e.g. an experimental encoder that this build refuses
        pytest.skip(f"cannot encode {name} here: {exc}")

    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.abs(audio).max() <= 1.0
    # Lossless: the exact length, which needs the resampler's tail flushed. Lossy: allow for
    # encoder priming and padding (AAC keeps ~10-15 ms).
    if lossless:
        assert len(audio) == round(DURATION * SR)
    else:
        assert len(audio) / SR == pytest.approx(DURATION, abs=0.06)
    assert audio_duration(path) == pytest.approx(DURATION, abs=0.06)
    steady = middle(audio)
    assert dominant_freq(steady) == pytest.approx(FREQ, abs=2.0)
    # Averaging identical channels keeps the amplitude: no gain change, no normalisation.
    assert amplitude(steady) == pytest.approx(AMP, rel=0.05 if lossless else 0.15)


def test_stereo_is_averaged_not_summed(tmp_path: Path) -> None:
    """ffmpeg's own stereo -> mono matrix would give 0.707 * (L + R); we average like the
    reference pipeline."""
    left, right = sine(44_100, amp=0.8), np.zeros(round(44_100 * DURATION), np.float32)
    path = write_wav_s16(tmp_path / "left_only.wav", np.stack([left, right], axis=1), 44_100)
    assert amplitude(middle(load_audio(path))) == pytest.approx(0.4, rel=0.01)


def test_16k_mono_wav_is_sample_exact(tmp_path: Path) -> None:
    """No resampling is needed at 16 kHz mono: samples come back exactly (s16 / 32768)."""
    samples = np.random.default_rng(0).uniform(-0.9, 0.9, 12_345).astype(np.float32)
    path = write_wav_s16(tmp_path / "exact.wav", samples, SR)
    expected = np.round(samples * 32767).astype(np.int16) / np.float32(32768)
    np.testing.assert_allclose(load_audio(path), expected, rtol=0, atol=1e-7)


def test_first_audio_stream_is_used(tmp_path: Path) -> None:
    first = np.stack([sine(48_000, freq=440.0)])
    second = np.stack([sine(48_000, freq=1000.0)])
    path = write_media(
        tmp_path / "two.mkv", [("flac", 48_000, first), ("flac", 48_000, second)], video="mpeg4"
    )
    assert dominant_freq(middle(load_audio(path))) == pytest.approx(440.0, abs=2.0)


def test_silence_is_not_an_error(tmp_path: Path) -> None:
    path = write_wav_s16(tmp_path / "silence.wav", np.zeros(8000, np.float32), 8000)
    audio = load_audio(path)
    assert len(audio) == SR and not audio.any()


def test_iter_audio_chunks(tmp_path: Path) -> None:
    path = write_media(tmp_path / "tone.flac", [("flac", 44_100, np.stack([sine(44_100, seconds=2.3)]))])
    chunks = list(iter_audio(path, chunk_seconds=0.5))
    assert [len(c) for c in chunks] == [8000, 8000, 8000, 8000, 4800]
    assert all(c.dtype == np.float32 for c in chunks)
    np.testing.assert_array_equal(np.concatenate(chunks), load_audio(path))


# --- user errors -------------------------------------------------------------------------------


def _video_only_mp4(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = _add_video(container, "mpeg4")
        _encode_video(container, stream, 0.4)
    return path


def _zero_sample_wav(path: Path) -> Path:
    return write_wav_s16(path, np.zeros(0, np.float32), SR)


def _truncated_flac(path: Path) -> Path:
    good = write_media(path.with_name("good.flac"), [("flac", SR, np.stack([sine(SR)]))])
    path.write_bytes(good.read_bytes()[:30])  # the stream header is cut off
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


ERROR_CASES = {
    "missing": (lambda p: p / "nope.wav", "no such file"),
    "directory": (lambda p: p, "is a directory"),
    "empty": (lambda p: _write(p / "empty.wav", b""), "cannot decode"),
    "random_bytes": (
        lambda p: _write(p / "noise.mp3", np.random.default_rng(0).bytes(20_000)),
        "cannot decode",
    ),
    # ffmpeg may probe a text file as a (tty) video: either way it is no usable audio.
    "text": (lambda p: _write(p / "notes.txt", b"hello world\n" * 200), ""),
    "video_only": (lambda p: _video_only_mp4(p / "video.mp4"), "has no audio stream"),
    "zero_samples": (lambda p: _zero_sample_wav(p / "zero.wav"), "contains no audio samples"),
    "truncated": (lambda p: _truncated_flac(p / "cut.flac"), "cannot decode"),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_user_errors_are_one_line_audio_errors(tmp_path: Path, case: str) -> None:
    make, expected = ERROR_CASES[case]
    path = make(tmp_path)
    for func in (load_audio, audio_duration):
        if case == "zero_samples" and func is audio_duration:
            continue  # a valid header with no samples has a duration of 0: not an error there
        with pytest.raises(AudioError) as info:
            func(path)
        message = str(info.value)
        assert isinstance(info.value, VoxtralError)
        assert "\n" not in message and message.strip() == message
        assert expected in message
        assert str(path) in message
        if case == "text":
            assert "has no audio stream" in message or "cannot decode" in message


def test_iter_audio_reports_no_samples_after_yielding_nothing(tmp_path: Path) -> None:
    path = _zero_sample_wav(tmp_path / "zero.wav")
    gen = iter_audio(path)
    with pytest.raises(AudioError, match="contains no audio samples"):
        next(gen)
