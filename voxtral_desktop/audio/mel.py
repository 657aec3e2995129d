"""The log-mel front end: one incremental implementation for live streams and whole files.

The features equal Hugging Face's `VoxtralRealtimeFeatureExtractor` (center=True):

* centred STFT, n_fft = window = 400 (periodic Hann), hop 160, reflect padding of 200 samples
  at both ends; frame k covers samples [k*160 - 200, k*160 + 200);
* power spectrum |X|^2 over 201 bins, and the LAST STFT frame is dropped, so a signal of n
  samples gives exactly n // 160 frames;
* 128 Slaney mel filters (0-8000 Hz, Slaney area normalisation);
* log10(max(x, 1e-10)), then max(x, 1.5 - 8) with the fixed `global_log_mel_max` 1.5 (never
  the per-utterance max), then (x + 4) / 4. No upper clamp.

`LogMelStream` emits frame k as soon as its 400-sample window is complete, i.e. once the
stream holds samples up to index k*160 + 200 (exclusive). A live stream always starts with
2.56 s of digital silence, so the stream takes zeros as the left context before sample 0; that
equals reflect padding whenever the signal's first 201 samples are zeros. `flush()` ends the
stream and emits the remaining frames with reflect padding on the right, exactly like the
offline STFT. `log_mel()` runs the same stream over a whole signal (with a reflected left
context), so the offline and the streaming paths cannot drift apart.

`FrameWindows` is the stream's bookkeeping alone: which frames are complete and the samples
their windows cover. A streaming session on a GPU takes those samples 8 frames at a time and
computes the frames with the same `frames_to_log_mel` inside its CUDA graph step, so the CPU
does no STFT between two steps.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from voxtral_desktop.config import HOP_LENGTH, N_FFT, SAMPLE_RATE
from voxtral_desktop.kernels import mel_frames, mel_tail

N_MELS = 128
N_FREQ_BINS = N_FFT // 2 + 1  # 201
GLOBAL_LOG_MEL_MAX = 1.5
_HALF_WINDOW = N_FFT // 2  # 200: centred frames reach this far either side of k*160
_LOG_FLOOR = 1e-10
_DYNAMIC_RANGE = 8.0  # log10 units kept below global_log_mel_max
# Frames computed per STFT call: bounds the transient [201, frames] complex buffer (~3 MB)
# when a whole file is pushed at once.
_MAX_FRAMES_PER_BLOCK = 2048
# `FrameWindows.take` copies the samples it keeps once they are fewer than this.
_COPY_BELOW = 8192

__all__ = [
    "GLOBAL_LOG_MEL_MAX",
    "N_MELS",
    "FrameWindows",
    "LogMelStream",
    "dft_power",
    "frames_to_log_mel",
    "log_mel",
    "log_mel_on",
    "mel_filters",
    "n_frames_for",
    "window_span",
]


# --- mel filter bank (Slaney scale, Slaney area normalisation) --------------------------------


def _hz_to_mel_slaney(freq: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (3 mel per 200 Hz) below 1 kHz, logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    mels = 3.0 * freq / 200.0
    log_region = freq >= 1000.0
    mels[log_region] = 15.0 + np.log(freq[log_region] / 1000.0) * (27.0 / np.log(6.4))
    return mels


def _mel_to_hz_slaney(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    freq = 200.0 * mels / 3.0
    log_region = mels >= 15.0
    freq[log_region] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels[log_region] - 15.0))
    return freq


@functools.lru_cache(maxsize=8)
def _mel_filters_cached(n_mels: int, sr: int, n_fft: int, fmin: float, fmax: float) -> np.ndarray:
    # Same float64 arithmetic, in the same order, as transformers.audio_utils.mel_filter_bank, so
    # the float32 cast is bit-identical to what the HF feature extractor multiplies with.
    mel_edges = np.linspace(
        _hz_to_mel_slaney(np.array([fmin]))[0], _hz_to_mel_slaney(np.array([fmax]))[0], n_mels + 2
    )
    edge_hz = _mel_to_hz_slaney(mel_edges)  # [n_mels + 2]: left edge, centres, right edge
    fft_hz = np.linspace(0, sr // 2, n_fft // 2 + 1)  # [n_freq]
    slopes = edge_hz[None, :] - fft_hz[:, None]  # [n_freq, n_mels + 2]
    widths = np.diff(edge_hz)  # [n_mels + 1]
    down = -slopes[:, :-2] / widths[:-1]  # [n_freq, n_mels] rising edge of filter m
    up = slopes[:, 2:] / widths[1:]  # [n_freq, n_mels] falling edge of filter m
    weights = np.maximum(0.0, np.minimum(down, up))  # [n_freq, n_mels]
    # Slaney area normalisation: every filter integrates to roughly the same energy.
    weights *= 2.0 / (edge_hz[2 : n_mels + 2] - edge_hz[:n_mels])[None, :]
    filters = np.ascontiguousarray(weights.T, dtype=np.float32)  # [n_mels, n_freq]
    filters.setflags(write=False)  # shared by every caller through the cache
    return filters


def mel_filters(
    n_mels: int = N_MELS,
    sr: int = SAMPLE_RATE,
    n_fft: int = N_FFT,
    fmin: float = 0.0,
    fmax: float = 8000.0,
) -> np.ndarray:
    """Slaney mel filter bank as a read-only float32 array [n_mels, n_fft // 2 + 1].

    This is the transpose of HF's `mel_filter_bank(..., norm="slaney", mel_scale="slaney")`,
    which returns [n_freq, n_mels].
    """
    return _mel_filters_cached(int(n_mels), int(sr), int(n_fft), float(fmin), float(fmax))


@functools.lru_cache(maxsize=1)
def _torch_constants() -> tuple[torch.Tensor, torch.Tensor]:
    """(periodic Hann window [400], mel filters [128, 201]) as float32 CPU tensors."""
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float32)
    filters = torch.from_numpy(mel_filters().copy())
    return window, filters


# Unbounded caches on purpose: a captured CUDA graph reads these tensors by address, so they
# must live as long as the process (a handful of small tensors per device).
@functools.cache
def _constants_on(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    window, filters = _torch_constants()
    return window.to(device), filters.to(device)


def n_frames_for(n_samples: int) -> int:
    """Number of log-mel frames of a whole signal of `n_samples` samples (the last STFT frame
    is dropped, so a multiple of 160 samples gives exactly n / 160 frames)."""
    return max(0, int(n_samples)) // HOP_LENGTH


def window_span(n_frames: int) -> int:
    """Samples that `n_frames` consecutive frames' windows cover: (n - 1) * 160 + 400."""
    return (n_frames - 1) * HOP_LENGTH + N_FFT


def frames_to_log_mel(
    segment: torch.Tensor,
    n_frames: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Log-mel of `n_frames` consecutive frames whose windows tile `segment`.

    segment: float32 [..., window_span(n_frames)], frame j = segment[..., j*160 : j*160 + 400]
    (batch dimensions allowed). Returns [..., n_mels, n_frames] on `device`, computed in
    float32 and rounded once to `dtype`: the CPU for `LogMelStream`, the GPU inside a streaming
    session's CUDA graph step. `device` (default: the segment's) is where it is computed and
    returned; a CUDA device takes the segment from pinned host memory too (the step graph's input
    buffer), read inside the graph.

    On the CPU the spectrum is torch.stft's, which keeps the frames within 1e-7 of HF. On a
    CUDA GPU it is a matmul with the windowed DFT basis instead of cuFFT: a CUDA graph that
    captured cuFFT would keep using the workspace of a plan that torch's plan cache may later
    free (every new signal length makes a plan), and a matmul has no such state. The two agree
    within 1e-5 (tests/test_gpu.py). A step's few frames take three Triton kernels with the same
    basis (kernels/mel_frames.py), where the torch ops were nine nodes of the step's graph.
    """
    if segment.shape[-1] != window_span(n_frames):
        raise ValueError(f"{n_frames} frames need {window_span(n_frames)} samples, got {segment.shape[-1]}")
    device = segment.device if device is None else device
    window, filters = _constants_on(device)
    if device.type == "cuda":
        basis = _dft_basis_on(device)
        if mel_frames.applies(segment, n_frames, basis):  # a step's frames: three kernels
            low = GLOBAL_LOG_MEL_MAX - _DYNAMIC_RANGE
            return mel_frames.log_mel(segment, n_frames, HOP_LENGTH, basis, filters, _LOG_FLOOR, low, dtype)
        segment = segment.to(device, non_blocking=True)
        return _power_to_log_mel(dft_power(segment), filters, dtype)  # [..., 128, n_frames]
    rows = segment.reshape(-1, segment.shape[-1])  # torch.stft takes at most one batch dimension
    spec = torch.stft(rows, N_FFT, HOP_LENGTH, window=window, center=False, return_complex=True)
    spec = spec.reshape(*segment.shape[:-1], N_FREQ_BINS, n_frames)  # [..., 201, n_frames] complex64
    # abs() then square, like HF, rather than re^2 + im^2: keeps the rounding identical.
    return _power_to_log_mel(spec.abs() ** 2, filters, dtype)  # [..., 128, n_frames]


def dft_power(segment: torch.Tensor) -> torch.Tensor:
    """The power spectrum of the frames tiling `segment` [..., window_span(n)] as a matmul with
    the windowed DFT basis: [..., 201, n] float32 (what `frames_to_log_mel` uses on CUDA; the
    CPU tests check it against torch.stft)."""
    frames = segment.unfold(-1, N_FFT, HOP_LENGTH)  # [..., n, 400], a view
    spec = frames @ _dft_basis_on(segment.device)  # [..., n, 402]: re | im
    if mel_tail.applies(spec):  # one kernel, each square rounded before the add as below
        return mel_tail.power(spec).transpose(-1, -2)
    return (spec[..., :N_FREQ_BINS].square() + spec[..., N_FREQ_BINS:].square()).transpose(-1, -2)


@functools.cache  # kept for the process: captured graphs read it (see `_constants_on`)
def _dft_basis_on(device: torch.device) -> torch.Tensor:
    """The periodic Hann window times the real DFT, float32 [400, 402]: column k < 201 is
    w[n] cos(2 pi n k / 400), column 201 + k is -w[n] sin(...). Made in float64 with exact
    angles (n k mod 400), then rounded once."""
    window = _torch_constants()[0].double()
    n = torch.arange(N_FFT, dtype=torch.int64)
    k = torch.arange(N_FREQ_BINS, dtype=torch.int64)
    angle = (n[:, None] * k[None, :] % N_FFT).double() * (2 * np.pi / N_FFT)  # [400, 201]
    basis = torch.cat([angle.cos(), -angle.sin()], dim=1) * window[:, None]
    return basis.float().to(device)


def _power_to_log_mel(
    power: torch.Tensor, filters: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Power spectrum [..., 201, frames] -> the normalised log-mel [..., 128, frames], computed
    in float32 and rounded once to `dtype`."""
    mel = filters @ power  # [128, 201] @ [..., 201, n_frames] -> [..., 128, n_frames]
    if mel_tail.applies(mel):  # one kernel, the same arithmetic
        return mel_tail.log_mel(mel, _LOG_FLOOR, GLOBAL_LOG_MEL_MAX - _DYNAMIC_RANGE, dtype)
    log_spec = torch.clamp(mel, min=_LOG_FLOOR).log10()
    log_spec = torch.clamp(log_spec, min=GLOBAL_LOG_MEL_MAX - _DYNAMIC_RANGE)
    return ((log_spec + 4.0) / 4.0).to(dtype)


class FrameWindows:
    """Which log-mel frames of a stream are complete, and the samples their windows cover.

    Push samples; frame k is complete once the stream holds samples up to index k*160 + 200
    (exclusive). `take(n)` hands over the samples of the next n complete frames, to compute
    wherever suits (`frames_to_log_mel` on the CPU or the GPU) and drops what no later frame
    needs. `LogMelStream` takes every frame as soon as it completes; a streaming session takes
    them 8 at a time (one decoder position) and computes them on the model's device.

    State, in absolute sample indices (sample 0 is the first pushed sample):

    * `_next`: index of the next frame to take; its window starts at `_next * 160 - 200`;
    * `_buf`: the samples from that window start to the newest sample. Before sample 0 it holds
      the left context (200 zeros for a live stream). Invariant:
      `len(_buf) == n_samples - (_next * 160 - 200)`, so memory grows only with the frames
      pushed and not yet taken (below 400 samples once every complete frame was taken).
    """

    def __init__(self, left_context: np.ndarray | None = None) -> None:
        self._left_context = (
            np.zeros(_HALF_WINDOW, dtype=np.float32)
            if left_context is None
            else np.asarray(left_context, dtype=np.float32).copy()
        )
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next push is sample 0 of a new stream."""
        self._buf = self._left_context.copy()  # [200 + samples not yet fully consumed]
        self._next = 0
        self._complete = 0
        self._n_samples = 0
        self._finished = False

    @property
    def n_samples(self) -> int:
        """Samples pushed since the last reset."""
        return self._n_samples

    @property
    def n_taken(self) -> int:
        """Frames taken since the last reset."""
        return self._next

    @property
    def ready(self) -> int:
        """Complete frames not yet taken."""
        return self._complete - self._next

    @property
    def buffered_samples(self) -> int:
        return len(self._buf)

    @property
    def finished(self) -> bool:
        """`flush()` ended the stream."""
        return self._finished

    def push(self, samples: np.ndarray) -> int:
        """Append mono float32 samples; return `ready`."""
        if self._finished:
            raise RuntimeError("flush() ended this stream; call reset() to start a new one")
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"a log-mel stream takes 1-D mono samples, got shape {samples.shape}")
        self._buf = np.concatenate([self._buf, samples])  # [window start of _next .. newest]
        self._n_samples += len(samples)
        if self._n_samples >= _HALF_WINDOW:  # frame k is complete once n_samples >= k*160 + 200
            self._complete = (self._n_samples - _HALF_WINDOW) // HOP_LENGTH + 1
        return self.ready

    def flush(self) -> int:
        """End the stream: the frames still missing become complete, so that the stream has
        `n_samples // 160` frames in all, with the right edge reflect-padded like HF's STFT.
        Only the last frame or so reaches past the end (by at most 40 samples). Returns `ready`;
        the stream accepts no more samples until `reset()`."""
        if self._finished:
            return self.ready
        self._finished = True
        total = n_frames_for(self._n_samples)
        if total > self._complete:
            # The last frame's window ends at (total - 1) * 160 + 200 <= n_samples + 40.
            need = (total - 1) * HOP_LENGTH + _HALF_WINDOW - self._n_samples
            if need > 0:
                # Reflect padding (no repeat of the edge sample): x[n-2], x[n-3], ..., x[n-1-need].
                # `total >= 1` means n_samples >= 160 > need, so these are real samples, never
                # the left context.
                pad = self._buf[-2 : -2 - need : -1]  # [need]
                self._buf = np.concatenate([self._buf, pad])
            self._complete = total
        return self.ready

    def take(self, count: int) -> np.ndarray:
        """The samples of the next `count` (<= `ready`) frames: float32 [window_span(count)],
        frame j = segment[j*160 : j*160 + 400]. The samples no later frame needs are dropped."""
        if not 0 < count <= self.ready:
            raise ValueError(f"cannot take {count} frames: {self.ready} are ready")
        segment = self._buf[: window_span(count)]
        self._next += count
        # The next window starts count * 160 samples later. The rest is copied once it is
        # small, so the buffer never pins a large array that was pushed in one go; a long push
        # taken piece by piece stays a view until then instead of being copied for every piece.
        rest = self._buf[count * HOP_LENGTH :]
        self._buf = rest.copy() if len(rest) <= _COPY_BELOW else rest
        return segment


class LogMelStream:
    """Incremental log-mel: push samples, get the frames that became computable (every frame
    is computed on the CPU as soon as its window is complete; see `FrameWindows`)."""

    def __init__(self, left_context: np.ndarray | None = None) -> None:
        """`left_context`: the 200 samples before sample 0 (zeros for a live stream; `log_mel`
        passes the reflect padding HF applies to a whole signal)."""
        self._windows = FrameWindows(left_context)

    def reset(self) -> None:
        """Forget everything: the next push is sample 0 of a new stream."""
        self._windows.reset()

    @property
    def n_samples(self) -> int:
        """Samples pushed since the last reset."""
        return self._windows.n_samples

    @property
    def n_frames(self) -> int:
        """Frames emitted since the last reset."""
        return self._windows.n_taken

    @property
    def buffered_samples(self) -> int:
        """Samples held in memory (bounded: below 400)."""
        return self._windows.buffered_samples

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Append mono float32 samples; return the newly complete frames, float32 [n_mels, k]
        (k may be 0)."""
        if self._windows.finished:
            raise RuntimeError("flush() ended this LogMelStream; call reset() to start a new one")
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"LogMelStream.push expects 1-D mono samples, got shape {samples.shape}")
        # Feed big pushes in pieces so one STFT call never covers more than a block of frames.
        step = _MAX_FRAMES_PER_BLOCK * HOP_LENGTH
        out = []
        for i in range(0, len(samples), step):
            self._windows.push(samples[i : i + step])
            out.append(self._emit())
        return _concat_frames(out)

    def flush(self) -> np.ndarray:
        """End the stream: return the frames still missing so that the stream has emitted
        `n_samples // 160` frames in all, with the right edge reflect-padded like HF's STFT.
        The stream accepts no more samples until `reset()`."""
        if self._windows.finished:
            return _empty_frames()
        self._windows.flush()
        return self._emit()

    def _emit(self) -> np.ndarray:
        count = self._windows.ready
        if count <= 0:
            return _empty_frames()
        segment = torch.from_numpy(self._windows.take(count))
        return frames_to_log_mel(segment, count).numpy()  # [n_mels, count]


def _empty_frames() -> np.ndarray:
    return np.zeros((N_MELS, 0), dtype=np.float32)


def _concat_frames(parts: list[np.ndarray]) -> np.ndarray:
    parts = [p for p in parts if p.shape[1]]
    if not parts:
        return _empty_frames()
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)  # [n_mels, sum k]


def log_mel(samples: np.ndarray) -> np.ndarray:
    """Log-mel of a whole signal: float32 [n_mels, len(samples) // 160], equal to HF's
    `VoxtralRealtimeFeatureExtractor` (reflect padding at both ends).

    In the model's use the signal is already padded with zeros on both sides, so the reflect
    padding is zeros and the result equals a `LogMelStream` fed the same samples and flushed.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"log_mel expects 1-D mono samples, got shape {samples.shape}")
    if n_frames_for(len(samples)) == 0:
        return _empty_frames()
    # HF (torch.stft center=True) reflects x[200], ..., x[1] in front of x[0]. np.pad also
    # handles signals shorter than 201 samples, where torch.stft itself would refuse.
    left = np.pad(samples, (_HALF_WINDOW, 0), mode="reflect")[:_HALF_WINDOW]  # [200]
    stream = LogMelStream(left)
    return _concat_frames([stream.push(samples), stream.flush()])


def log_mel_on(samples: np.ndarray, device: torch.device) -> torch.Tensor:
    """`log_mel(samples)` computed on `device` (the GPU for batches of files, where the CPU
    STFT of a minute of audio, ~30 ms, would cost more than the model): float32 tensor
    [n_mels, len(samples) // 160] on `device`. The same STFT (centred, reflect padding), power
    and mel steps as `log_mel`, in one call over the whole signal (eager, never inside a CUDA
    graph, so cuFFT's plan cache is no concern here; see `frames_to_log_mel`)."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ValueError(f"log_mel_on expects 1-D mono samples, got shape {samples.shape}")
    n = n_frames_for(len(samples))
    if len(samples) <= _HALF_WINDOW:  # too short for torch's reflect padding: tiny anyway
        return torch.from_numpy(log_mel(samples)).to(device)
    window, filters = _constants_on(device)
    x = torch.from_numpy(samples).to(device)
    spec = torch.stft(
        x, N_FFT, HOP_LENGTH, window=window, center=True, pad_mode="reflect", return_complex=True
    )  # [201, n + 1]: the last frame is dropped
    return _power_to_log_mel(spec[:, :n].abs() ** 2, filters)
