"""The log-mel front end: HF parity (the oracle) and streaming == offline for any chunking."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch

from voxtral_desktop.audio.decode import load_audio
from voxtral_desktop.audio.mel import (
    GLOBAL_LOG_MEL_MAX,
    N_MELS,
    FrameWindows,
    LogMelStream,
    dft_power,
    frames_to_log_mel,
    log_mel,
    mel_filters,
    n_frames_for,
    window_span,
)
from voxtral_desktop.config import N_LEFT_PAD_TOKENS, SAMPLE_RATE, SAMPLES_PER_TOKEN

SR = SAMPLE_RATE
FLOOR = (GLOBAL_LOG_MEL_MAX - 8.0 + 4.0) / 4.0  # -0.625: the value of every frame of silence
N_RIGHT_PAD_TOKENS_480MS = 17  # n_delay 6 + 1 + 10 at the default 480 ms delay


# --- fixtures and helpers --------------------------------------------------------------------


def model_pad(audio: np.ndarray) -> np.ndarray:
    """Pad like the model's offline path: 32 tokens of zeros in front; zeros up to a multiple
    of 1280, then 17 more tokens of zeros behind."""
    left = N_LEFT_PAD_TOKENS * SAMPLES_PER_TOKEN
    right = -len(audio) % SAMPLES_PER_TOKEN + N_RIGHT_PAD_TOKENS_480MS * SAMPLES_PER_TOKEN
    return np.pad(audio.astype(np.float32), (left, right))


@pytest.fixture(scope="module")
def hf_log_mel() -> Callable[[np.ndarray], np.ndarray]:
    """HF's VoxtralRealtimeFeatureExtractor as a function: samples -> [128, frames]."""
    transformers = pytest.importorskip("transformers")
    extractor = transformers.VoxtralRealtimeFeatureExtractor()

    def run(audio: np.ndarray) -> np.ndarray:
        out = extractor(audio, sampling_rate=SR, return_tensors="pt")["input_features"]
        return out[0].numpy()

    return run


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """About 2 s of real speech from espeak-ng (22050 Hz WAV, resampled by our decoder)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed")
    wav = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run(
        [espeak, "-w", str(wav), "The quick brown fox jumps over the lazy dog."],
        check=True,
        capture_output=True,
        timeout=60,
    )
    audio = load_audio(wav)
    assert len(audio) > SR  # espeak really produced speech
    return audio


def noise(n: int, seed: int = 0, scale: float = 0.1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * scale).astype(np.float32)


def tone(n: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / SR)).astype(np.float32)


def stream_clip() -> np.ndarray:
    """A short zero-led clip (a live stream always starts with silence), ending mid-hop."""
    return np.concatenate(
        [np.zeros(400, np.float32), noise(4000, seed=1), tone(2000, 1000.0), noise(123, seed=2)]
    )


def expected_emitted(n_samples: int) -> int:
    """Frames a stream must have emitted after n samples: frame k needs samples < k*160 + 200."""
    return 0 if n_samples < 200 else (n_samples - 200) // 160 + 1


def chunk_sizes(kind: str, n: int) -> Iterator[int]:
    if kind == "ones":
        yield from [1] * n
    elif kind == "hop":
        yield from [160] * (n // 160 + 1)
    elif kind == "odd":
        yield from [7, 1279] * (n // 1286 + 1)
    elif kind == "random":
        rng = np.random.default_rng(3)
        yield from rng.integers(0, 700, size=n).tolist()  # zero-size pushes included
    elif kind == "one_push":
        yield n
    else:  # pragma: no cover
        raise AssertionError(kind)


def run_stream(stream: LogMelStream, audio: np.ndarray, kind: str) -> np.ndarray:
    parts, pos = [], 0
    for size in chunk_sizes(kind, len(audio)):
        if pos >= len(audio):
            break
        out = stream.push(audio[pos : pos + size])
        pos += len(audio[pos : pos + size])
        assert out.dtype == np.float32 and out.shape[0] == N_MELS
        parts.append(out)
        assert stream.n_frames == expected_emitted(pos)
    parts.append(stream.flush())
    return np.concatenate(parts, axis=1)


# --- mel filters -------------------------------------------------------------------------------


def test_mel_filters_match_hf() -> None:
    audio_utils = pytest.importorskip("transformers.audio_utils")
    ref = audio_utils.mel_filter_bank(
        num_frequency_bins=201,
        num_mel_filters=128,
        min_frequency=0.0,
        max_frequency=8000.0,
        sampling_rate=16000,
        norm="slaney",
        mel_scale="slaney",
    )  # [201, 128] float64
    ours = mel_filters()
    assert ours.shape == (128, 201) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref.T, rtol=0, atol=1e-6)
    # What HF multiplies with is the float32 cast: ours is bit-identical to it.
    assert np.array_equal(ours, ref.T.astype(np.float32))
    assert mel_filters() is ours  # cached
    assert not ours.flags.writeable


# --- offline log-mel == HF -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["speech", "noise", "tone"])
def test_log_mel_matches_hf_on_model_padded_audio(
    kind: str, request: pytest.FixtureRequest, hf_log_mel
) -> None:
    if kind == "speech":
        audio = request.getfixturevalue("speech")
    elif kind == "noise":
        audio = noise(SR + 517)
    else:
        audio = tone(SR // 2 + 3, 1234.5)
    padded = model_pad(audio)
    ref = hf_log_mel(padded)
    ours = log_mel(padded)
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape == (N_MELS, len(padded) // 160)
    assert ours.shape[1] % 8 == 0  # 8 mel frames per 80 ms token
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)
    assert np.all(ours[:, :200] == pytest.approx(FLOOR))  # the left pad is digital silence
    assert ours.max() > FLOOR + 1.0  # and the audio is not


@pytest.mark.parametrize("n", [201, 333, 1600, 16037])
def test_log_mel_matches_hf_with_reflect_edges(n: int, hf_log_mel) -> None:
    """Unpadded noise: both edges use HF's reflect padding (the last frame reaches up to 40
    samples past the end)."""
    audio = noise(n, seed=n)
    ref = hf_log_mel(audio)
    ours = log_mel(audio)
    assert ours.shape == ref.shape == (N_MELS, n // 160)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("n", [0, 150, 201, 1600, 16037, 16000 * 20 + 77])
def test_log_mel_on_a_device_equals_log_mel(n: int) -> None:
    """The one-call torch path (what file batches run on the GPU) against the streaming one."""
    import torch

    from voxtral_desktop.audio.mel import log_mel_on

    audio = noise(n, seed=n + 1)
    ours = log_mel_on(audio, torch.device("cpu"))
    assert isinstance(ours, torch.Tensor) and ours.dtype == torch.float32
    assert ours.shape == (N_MELS, n // 160)
    np.testing.assert_allclose(ours.numpy(), log_mel(audio), rtol=0, atol=1e-5)
    with pytest.raises(ValueError):
        log_mel_on(np.zeros((2, 1600), np.float32), torch.device("cpu"))


@pytest.mark.parametrize("n", [0, 1, 159, 160, 199, 319, 320, 3840])
def test_frame_count(n: int) -> None:
    assert n_frames_for(n) == n // 160
    out = log_mel(noise(n))
    assert out.shape == (N_MELS, n // 160) and out.dtype == np.float32


def test_log_mel_max_is_fixed_not_per_utterance() -> None:
    """Silence sits at the fixed floor, and scaling the input shifts every unclamped value by the
    same log10 amount: there is no normalisation by the utterance's own maximum."""
    assert np.all(log_mel(np.zeros(3200, np.float32)) == FLOOR)
    quiet = log_mel(tone(8000, 440.0, amp=0.01))
    loud = log_mel(tone(8000, 440.0, amp=0.1))  # x10 amplitude = x100 power = +2 in log10
    both_unclamped = (quiet > FLOOR + 1e-3) & (loud > FLOOR + 1e-3)
    assert both_unclamped.sum() > 100
    np.testing.assert_allclose((loud - quiet)[both_unclamped], 0.5, atol=1e-4)


def test_log_mel_rejects_non_mono() -> None:
    with pytest.raises(ValueError):
        log_mel(np.zeros((2, 1600), np.float32))
    with pytest.raises(ValueError):
        LogMelStream().push(np.zeros((1600, 2), np.float32))


# --- streaming == offline --------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ones", "hop", "odd", "random", "one_push"])
def test_stream_equals_offline_for_any_chunking(kind: str) -> None:
    audio = stream_clip()
    streamed = run_stream(LogMelStream(), audio, kind)
    offline = log_mel(audio)
    assert streamed.shape == offline.shape == (N_MELS, len(audio) // 160)
    np.testing.assert_allclose(streamed, offline, rtol=0, atol=1e-6)


def test_stream_equals_hf_on_padded_speech(speech: np.ndarray, hf_log_mel) -> None:
    """The real use: stream the model-padded speech in 80 ms chunks, then flush."""
    padded = model_pad(speech)
    streamed = run_stream(LogMelStream(), padded, "random")
    assert streamed.shape == (N_MELS, len(padded) // 160)
    np.testing.assert_allclose(streamed, hf_log_mel(padded), rtol=0, atol=1e-5)
    np.testing.assert_allclose(streamed, log_mel(padded), rtol=0, atol=1e-6)


def test_stream_emits_a_frame_exactly_when_its_window_is_complete() -> None:
    stream = LogMelStream()
    audio = noise(2000)
    assert stream.push(audio[:199]).shape == (N_MELS, 0)
    assert stream.push(audio[199:200]).shape == (N_MELS, 1)  # frame 0 = samples [-200, 200)
    assert stream.push(audio[200:359]).shape == (N_MELS, 0)
    assert stream.push(audio[359:360]).shape == (N_MELS, 1)  # frame 1 = samples [-40, 360)
    assert stream.push(audio[360:2000]).shape == (N_MELS, 10)  # frames 2..11 (11 ends at 1960)
    assert (stream.n_samples, stream.n_frames) == (2000, 12)
    assert stream.flush().shape == (N_MELS, 0)  # 2000 // 160 = 12: nothing left


def test_stream_left_context_is_silence() -> None:
    """A stream starts from zeros, which equals HF's reflect padding when the signal starts
    with at least 201 zeros."""
    audio = np.concatenate([np.zeros(201, np.float32), noise(1999)])
    stream = LogMelStream()
    got = np.concatenate([stream.push(audio), stream.flush()], axis=1)
    np.testing.assert_allclose(got, log_mel(audio), rtol=0, atol=1e-6)


def test_stream_memory_is_bounded() -> None:
    stream = LogMelStream()
    rng = np.random.default_rng(5)
    audio = noise(60 * SR, seed=6)  # a minute of audio
    pos, n_frames = 0, 0
    while pos < len(audio):
        size = int(rng.integers(1, 4000))
        n_frames += stream.push(audio[pos : pos + size]).shape[1]
        pos += size
        assert 240 <= stream.buffered_samples < 400  # the STFT tail, never the history
    assert n_frames == stream.n_frames == expected_emitted(len(audio))
    # One huge push is processed in blocks and leaves the same small tail behind.
    stream.reset()
    assert stream.push(audio).shape[1] == expected_emitted(len(audio))
    assert stream.buffered_samples < 400


def test_flush_ends_the_stream_and_reset_restarts_it() -> None:
    audio = stream_clip()
    stream = LogMelStream()
    first = np.concatenate([stream.push(audio), stream.flush()], axis=1)
    assert stream.flush().shape == (N_MELS, 0)  # idempotent
    with pytest.raises(RuntimeError):
        stream.push(audio[:10])
    stream.reset()
    assert (stream.n_samples, stream.n_frames) == (0, 0)
    again = np.concatenate([stream.push(audio), stream.flush()], axis=1)
    np.testing.assert_array_equal(again, first)


# --- frames taken a position at a time (the streaming session) ----------------------------------


def test_frame_windows_taken_eight_at_a_time_give_the_stream_frames() -> None:
    """What a session does: push any chunking, take whole positions (8 frames) of samples,
    compute their log-mel later (batched rows too) -> the frames `LogMelStream` emits."""
    audio = noise(3 * SR + 77, seed=11)
    expected = LogMelStream().push(audio)
    windows = FrameWindows()
    rng = np.random.default_rng(12)
    pos, taken = 0, []
    while pos < len(audio):
        size = int(rng.integers(0, 5000))
        ready = windows.push(audio[pos : pos + size])
        pos += size
        assert ready == windows.ready == expected_emitted(min(pos, len(audio))) - 8 * len(taken)
        while windows.ready >= 8:
            taken.append(windows.take(8))
        assert windows.buffered_samples < window_span(8)  # < 8 frames' windows, never the history
    assert all(t.shape == (window_span(8),) and t.dtype == np.float32 for t in taken)
    rows = frames_to_log_mel(torch.from_numpy(np.stack(taken)), 8).numpy()  # [positions, 128, 8]
    got = np.concatenate(list(rows), axis=1)
    nested = torch.from_numpy(np.stack(taken[:6])).reshape(2, 3, -1)  # two batch dimensions
    np.testing.assert_array_equal(frames_to_log_mel(nested, 8).reshape(6, N_MELS, 8).numpy(), rows[:6])
    np.testing.assert_allclose(got, expected[:, : got.shape[1]], rtol=0, atol=1e-6)
    assert got.shape[1] == expected.shape[1] // 8 * 8


def test_the_dft_matmul_gives_the_stft_frames() -> None:
    """On CUDA the spectrum is a matmul with the windowed DFT basis (no cuFFT plan inside a CUDA
    graph): the same power spectrum as torch.stft and, after the mel steps, the same frames."""
    from voxtral_desktop.audio.mel import _constants_on, _power_to_log_mel

    window, filters = _constants_on(torch.device("cpu"))
    rows = torch.from_numpy(np.stack([noise(window_span(8), seed=s) for s in range(3)]))
    rows[2, :600] = 0.0  # silence within a frame: the floor of the log must hold too
    stft = torch.stft(rows, 400, 160, window=window, center=False, return_complex=True).abs() ** 2
    power = dft_power(rows)
    assert power.shape == stft.shape == (3, 201, 8)
    np.testing.assert_allclose(power.numpy(), stft.numpy(), rtol=1e-4, atol=1e-6 * stft.max().item())
    got = _power_to_log_mel(power, filters).numpy()
    np.testing.assert_allclose(got, frames_to_log_mel(rows, 8).numpy(), rtol=0, atol=1e-5)
    # A pure tone's far bands hold only the window's leakage, where float32 itself is off by
    # ~1e-4 from float64 in either form: there the DFT matmul must be as good as the STFT.
    t = np.arange(window_span(64)) / SR
    tone = torch.from_numpy(np.sin(2 * np.pi * 1234.5 * t).astype(np.float32))
    exact = torch.stft(tone.double(), 400, 160, window=window.double(), center=False, return_complex=True)
    exact_mel = _power_to_log_mel(exact.abs() ** 2, filters.double())
    dft_error = (_power_to_log_mel(dft_power(tone), filters).double() - exact_mel).abs().max().item()
    stft_error = (frames_to_log_mel(tone, 64).double() - exact_mel).abs().max().item()
    assert dft_error < max(1.5 * stft_error, 1e-5) and dft_error < 3e-4


def test_frame_windows_refuse_what_is_not_ready() -> None:
    windows = FrameWindows()
    windows.push(noise(1150))  # frames 0..5 complete (frame 5 ends at 1000, frame 6 at 1160)
    assert windows.ready == 6
    with pytest.raises(ValueError, match="cannot take 7 frames: 6 are ready"):
        windows.take(7)
    with pytest.raises(ValueError, match="cannot take 0 frames"):
        windows.take(0)
    with pytest.raises(ValueError, match="need 1520 samples"):
        frames_to_log_mel(torch.zeros(1519), 8)
    assert windows.flush() == 7  # 1150 // 160: frame 6 reflect-padded at the right edge
    with pytest.raises(RuntimeError):
        windows.push(noise(10))


def test_a_long_push_taken_in_pieces_is_not_copied_each_time() -> None:
    """A minute pushed at once and taken 64 positions at a time (a file through a session): the
    samples left are a view of the pushed array until few are left, then a small copy."""
    audio = noise(60 * SR, seed=13)
    windows = FrameWindows()
    windows.push(audio)
    first = windows.take(512)
    np.testing.assert_array_equal(first[200:], audio[: window_span(512) - 200])
    assert windows._buf.base is not None  # a view, not a copy of the rest of the minute
    while windows.ready >= 512:
        windows.take(512)
    windows.take(windows.ready)
    assert windows.buffered_samples < 400 and windows._buf.base is None


def test_runtime_does_not_import_transformers_or_librosa() -> None:
    """transformers is a test-only oracle; the front end must work without it."""
    code = (
        "import sys, numpy as np; from voxtral_desktop.audio import mel; "
        "mel.LogMelStream().push(np.zeros(1600, np.float32)); "
        "bad = [m for m in ('transformers', 'librosa') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
