"""`voxtral-desktop bench`: the speed of the real architecture, with random weights built in memory.

Nothing is downloaded: a full-size checkpoint of random Q4_0 blocks (scales chosen so every
matrix has std ~ 1/sqrt(fan_in), which keeps activations finite) goes through the same loader,
kernels, session and batch decoder as real weights. Measured: load time, streaming step latency
(p50/p95/p99 over N steps of 80 ms audio fed like a microphone), time to first token, one long
file's real-time factor, a folder batch's throughput, peak GPU and host memory; optionally the
same workload through HF transformers.
"""

from __future__ import annotations

import gc
import json
import logging
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voxtral_desktop.config import SAMPLE_RATE, SAMPLES_PER_TOKEN, ModelConfig, StreamConfig
from voxtral_desktop.device import DeviceChoice, resolve_device
from voxtral_desktop.engine.batch import BatchDecoder
from voxtral_desktop.engine.session import StreamingSession
from voxtral_desktop.engine.tokenizer import TekkenTokenizer
from voxtral_desktop.engine.transcribe import transcribe_stream
from voxtral_desktop.errors import DeviceError
from voxtral_desktop.kernels import pdl
from voxtral_desktop.kernels.q4 import Q4_0_BLOCK, Q4_0_BLOCK_BYTES, Q4Weight
from voxtral_desktop.kernels.select import choose_kv_int8, choose_q4_backend, kv_cache_name
from voxtral_desktop.model.build import build_model
from voxtral_desktop.model.voxtral import VoxtralModel
from voxtral_desktop.synthetic.tekken import build_tekken_json
from voxtral_desktop.weights.names import TensorKind, expected_tensors

log = logging.getLogger(__name__)


@dataclass
class BenchResult:
    machine: str
    device: str
    kernel: str
    config: str
    kv_cache: str = ""
    pdl: bool = False  # kernels launched with programmatic dependent launch (kernels/pdl.py)
    host_threads: int = 0  # PyTorch's CPU threads while measuring (device.host_threads_for)
    load_s: float = 0.0
    graph_capture_s: float = 0.0
    step_ms: dict[str, float] = field(default_factory=dict)  # p50/p95/p99/mean of a streaming step
    steps: int = 0
    # the same with the decoder's cache full (its whole sliding window: a long caption session)
    step_full_window_ms: dict[str, float] = field(default_factory=dict)
    full_window_steps: int = 0
    first_token_ms: float = 0.0  # compute from the audio that completes the prompt to the first token
    file_seconds: float = 0.0
    file_rtfx: float = 0.0  # seconds of audio per second of compute, one stream
    file_segmented_rtfx: float = 0.0  # the same file cut at pauses into segments decoded as a batch
    segment_seconds: float = 0.0
    segment_batch: int = 0
    # Folder batches of each size (files side by side in one BatchDecoder): audio-hours per hour,
    # 0.0 where the size did not fit in memory.
    batch_files: tuple[int, ...] = ()
    batch_seconds_each: float = 0.0
    batch_rtfx: tuple[float, ...] = ()
    batch_peak_gpu_gb: tuple[float, ...] = ()  # each size's peak, the dense model's 8.2 GiB included
    folder_batch: int = 0  # the same files through `transcribe`'s path: segments sharing this many rows
    folder_segmented_rtfx: float = 0.0
    gpu_model_gb: float = 0.0  # held by the Q4 model alone once loaded (GiB)
    gpu_session_gb: float = 0.0  # held by the Q4 model and one live session once it runs (GiB)
    peak_gpu_gb: float = 0.0  # the Q4 model and one live session (full-window caches), streaming
    peak_gpu_file_gb: float = 0.0  # ... and the file paths (bulk graphs, the segment batch's state)
    peak_host_gb: float = 0.0
    transformers: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def random_q4_tensors(config: ModelConfig, seed: int = 0) -> dict[str, torch.Tensor | Q4Weight]:
    """Full-size random weights straight in Q4_0 (no float matrix is ever materialised)."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor | Q4Weight] = {}
    for spec in expected_tensors(config):
        if spec.quantizable:
            rows, cols = spec.shape
            nb = cols // Q4_0_BLOCK
            blocks = torch.randint(0, 256, (rows, nb, Q4_0_BLOCK_BYTES), generator=gen, dtype=torch.uint8)
            # uniform codes have std ~4.6: scale so the matrix has std ~1/sqrt(cols)
            scale = torch.full((rows, nb), 1.0 / (4.6 * cols**0.5), dtype=torch.float16)
            blocks[..., :2] = scale.view(torch.uint8).view(rows, nb, 2)
            out[spec.name] = Q4Weight(blocks.view(rows, nb * Q4_0_BLOCK_BYTES), (rows, cols))
        elif spec.kind is TensorKind.CONV:
            fan_in = spec.shape[1] * spec.shape[2]
            out[spec.name] = torch.randn(spec.shape, generator=gen) / fan_in**0.5
        elif spec.name.endswith("norm.weight"):
            out[spec.name] = torch.ones(spec.shape)
        else:
            out[spec.name] = 0.02 * torch.randn(spec.shape, generator=gen)
    return out


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    a = np.asarray(samples_ms)
    return {k: round(float(v), 3) for k, v in
            {"p50": np.percentile(a, 50), "p95": np.percentile(a, 95), "p99": np.percentile(a, 99),
             "mean": a.mean(), "max": a.max()}.items()}  # fmt: skip


def _rate(x: float) -> float:
    """A real-time factor for the table: 0.1 resolution, but 3 significant digits below 1x (a slow
    CPU's segmented file at 0.04x printed as 0.0x)."""
    return round(x, 1) if x >= 1 else float(f"{x:.3g}")


def _peak_host_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def measure_streaming(
    session: StreamingSession, steps: int, device: torch.device
) -> tuple[dict[str, float], float]:
    """Feed 80 ms chunks like a microphone; time every feed that runs a decoder position."""
    session.reset()
    n_prompt = session.config.n_prompt_tokens
    audio = noise((steps + n_prompt) * SAMPLES_PER_TOKEN / SAMPLE_RATE + 1, seed=1)
    times, first_token_ms = [], 0.0
    for i in range(0, len(audio) - SAMPLES_PER_TOKEN, SAMPLES_PER_TOKEN):
        before = session.state.n_decoded
        _sync(device)
        t0 = time.perf_counter()
        session.feed(audio[i : i + SAMPLES_PER_TOKEN])
        _sync(device)
        elapsed = (time.perf_counter() - t0) * 1e3
        if before < n_prompt <= session.state.n_decoded:  # the feed that emits the first token
            first_token_ms = elapsed
        elif before >= n_prompt and session.state.n_decoded > before:
            times.append(elapsed)
        if len(times) >= steps:
            break
    return _percentiles(times), first_token_ms


FULL_WINDOW_STEPS = 200  # steps timed with the decoder's window full, on a GPU


def measure_full_window(session: StreamingSession, steps: int, device: torch.device) -> dict[str, float]:
    """`steps` feeds timed as in `measure_streaming` once the decoder's cache is full: its ring
    holds the whole sliding window (8,192 positions: a caption session after 11 minutes), where
    every step's attention reads all of it. Noise is fed from where the session is until then."""
    cache = session.state.decoder.cache
    times: list[float] = []
    seed = 3
    while len(times) < steps:
        audio = noise(60.0, seed=seed)
        seed += 1
        for i in range(0, len(audio) - SAMPLES_PER_TOKEN + 1, SAMPLES_PER_TOKEN):
            full, before = cache.next_pos >= cache.capacity, session.state.n_decoded
            if full:
                _sync(device)
            t0 = time.perf_counter()
            session.feed(audio[i : i + SAMPLES_PER_TOKEN])
            if full and session.state.n_decoded > before:
                _sync(device)
                times.append((time.perf_counter() - t0) * 1e3)
                if len(times) >= steps:
                    break
    return _percentiles(times)


def run_bench(
    *,
    device: str = "auto",
    kernel: str = "auto",
    kv_cache: str = "auto",
    steps: int = 1000,
    full_window_steps: int | None = None,
    file_seconds: float = 600.0,
    batch_files: int | Sequence[int] = 64,
    batch_seconds: float = 60.0,
    segment_seconds: float = 30.0,
    segment_batch: int = 8,
    folder_batch: int = 32,
    compare_transformers: bool = False,
    config: ModelConfig | None = None,
    report: Callable[[str], None] = print,
) -> BenchResult:
    """`batch_files`: the folder batch's size, or several sizes measured in turn (one dense
    model); the folder through `transcribe` uses the first. `full_window_steps`: None is
    `FULL_WINDOW_STEPS` on a GPU, 0 on the CPU (filling the window there takes many minutes)."""
    choice: DeviceChoice = resolve_device(device)
    config = config or ModelConfig()
    sizes = tuple(n for n in ([batch_files] if isinstance(batch_files, int) else batch_files) if n > 0)
    batch_files = sizes[0] if sizes else 0
    dev = choice.device
    is_cuda = dev.type == "cuda"
    # What the app uses: bf16 on CUDA, fp32 on the CPU (whose int4 kernel takes bf16 inside).
    dtype = choice.dtype
    machine = (
        torch.cuda.get_device_name(dev) if is_cuda else f"{dev.type} ({torch.get_num_threads()} threads)"
    )
    backend = choose_q4_backend(dev, kernel)
    kv_int8 = choose_kv_int8(dev, dtype, kv_cache)
    result = BenchResult(
        machine=machine,
        device=f"{dev.type} {str(dtype).removeprefix('torch.')}",
        kernel="dense" if backend is None else backend.name,
        kv_cache=kv_cache_name(kv_int8, dtype),
        pdl=pdl.enabled(dev),
        host_threads=torch.get_num_threads(),
        config="full-size (random Q4_0 weights)" if config == ModelConfig() else str(config),
    )
    tokenizer = TekkenTokenizer.from_dict(
        build_tekken_json(min(2000, config.decoder.vocab_size - 1000), must_include=())
    )
    report(
        f"building random Q4_0 weights for "
        f"{sum(np.prod(t.shape) for t in expected_tensors(config)) / 1e9:.2f}B parameters"
    )
    tensors = random_q4_tensors(config)

    if is_cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    model = build_model(config, tensors, device=dev, dtype=dtype, q4_backend=backend, fuse=True)
    model.kv_int8 = kv_int8
    _sync(dev)
    result.load_s = round(time.perf_counter() - t0, 2)
    report(f"load (pack + fuse on {dev.type}): {result.load_s} s")
    if is_cuda:
        result.gpu_model_gb = round(torch.cuda.memory_allocated(dev) / 1024**3, 3)
        report(f"GPU memory held by the Q4 model: {result.gpu_model_gb} GiB")

    t0 = time.perf_counter()
    session = StreamingSession(model, tokenizer, StreamConfig(480), cuda_graphs=is_cuda)
    _sync(dev)
    result.graph_capture_s = round(time.perf_counter() - t0, 2)

    result.step_ms, result.first_token_ms = measure_streaming(session, steps, dev)
    result.steps = steps
    report(
        f"streaming step over {steps} steps: {result.step_ms} ms; first token {result.first_token_ms:.2f} ms"
    )
    if full_window_steps is None:
        full_window_steps = FULL_WINDOW_STEPS if dev.type != "cpu" else 0
    if full_window_steps > 0:
        result.step_full_window_ms = measure_full_window(session, full_window_steps, dev)
        result.full_window_steps = full_window_steps
        window = result.step_full_window_ms
        report(f"streaming step with the decoder's window full, {full_window_steps} steps: {window} ms")
    if is_cuda:
        result.gpu_session_gb = round(torch.cuda.memory_allocated(dev) / 1024**3, 3)
        result.peak_gpu_gb = round(torch.cuda.max_memory_allocated(dev) / 1024**3, 3)
        report(
            f"GPU memory (Q4 model + live session): held {result.gpu_session_gb} GiB, "
            f"peak {result.peak_gpu_gb} GiB (loading included)"
        )

    if file_seconds > 0:
        audio = noise(file_seconds, seed=2)
        chunks = [audio[i : i + 30 * SAMPLE_RATE] for i in range(0, len(audio), 30 * SAMPLE_RATE)]
        _sync(dev)
        t0 = time.perf_counter()
        transcribe_stream(session, chunks)
        _sync(dev)
        result.file_seconds = file_seconds
        result.file_rtfx = _rate(file_seconds / (time.perf_counter() - t0))
        report(f"one {file_seconds:.0f} s file, one stream: {result.file_rtfx}x real time")
        if segment_seconds > 0:
            from voxtral_desktop.engine.long_file import transcribe_segmented

            segments = BatchDecoder(
                model, tokenizer, StreamConfig(480), batch=segment_batch, max_seconds=segment_seconds,
                cuda_graphs=is_cuda,
            )  # fmt: skip
            # Warm-up: one whole segment, so its full encoder chunks compile here, not on the clock
            # (bench/chunk_variants.py; a 3 s warm-up left that to the timed run).
            transcribe_segmented(
                segments, [audio[: int(segment_seconds * SAMPLE_RATE)]], max_seconds=segment_seconds
            )
            _sync(dev)
            t0 = time.perf_counter()
            transcribe_segmented(segments, chunks, max_seconds=segment_seconds, balance_tail=True)
            _sync(dev)
            result.file_segmented_rtfx = _rate(file_seconds / (time.perf_counter() - t0))
            result.segment_seconds, result.segment_batch = segment_seconds, segment_batch
            report(
                f"one {file_seconds:.0f} s file in segments of <= {segment_seconds:.0f} s, {segment_batch} "
                f"at a time: {result.file_segmented_rtfx}x real time"
            )
            del segments
    if batch_files > 0 and segment_seconds > 0 and folder_batch > 0:
        # What `voxtral-desktop transcribe` does with several files: their segments share the
        # rows of one Q4 batch decoder, each file's transcript complete and in order.
        from voxtral_desktop.engine.long_file import transcribe_segmented_files

        rows = BatchDecoder(
            model, tokenizer, StreamConfig(480), batch=folder_batch, max_seconds=segment_seconds,
            cuda_graphs=is_cuda, dense=None,
        )  # fmt: skip
        why = f"{rows.dense_reason}, encoder cache {rows.encoder_reason}"
        folder = [noise(batch_seconds, seed=10 + i) for i in range(batch_files)]
        # Every row and encoder group once, so the kernels are compiled before the clock starts.
        warm_up = [[a[: 2 * SAMPLE_RATE]] for a in folder[:folder_batch]]
        list(transcribe_segmented_files(rows, warm_up, max_seconds=segment_seconds))
        _sync(dev)
        t0 = time.perf_counter()
        done = list(
            transcribe_segmented_files(
                rows, [[a] for a in folder], max_seconds=segment_seconds, balance_tail=True
            )
        )
        _sync(dev)
        assert len(done) == batch_files
        result.folder_batch = folder_batch
        result.folder_segmented_rtfx = _rate(batch_files * batch_seconds / (time.perf_counter() - t0))
        report(
            f"the folder through transcribe ({batch_files} x {batch_seconds:.0f} s, segments <= "
            f"{segment_seconds:.0f} s sharing {folder_batch} rows, {why}): "
            f"{result.folder_segmented_rtfx}x real time"
        )
        result.notes.append(f"folder through transcribe: {why}")
        del rows, folder, done
    if is_cuda:
        result.peak_gpu_file_gb = round(torch.cuda.max_memory_allocated(dev) / 1024**3, 3)
        report(
            f"peak GPU memory (Q4 model, live session and file paths, the folder's dense copy "
            f"included): {result.peak_gpu_file_gb} GiB"
        )
    del session

    if batch_files > 0:
        # Large batches: dequantised weights with cuBLAS beat int4 kernels (bench/RESULTS.md).
        del model
        gc.collect()  # graphs and states reference each other: free them before the next model
        if is_cuda:
            torch.cuda.empty_cache()
        dense = build_model(config, tensors, device=dev, dtype=dtype, q4_backend=None, fuse=True)
        dense.kv_int8 = kv_int8
        result.batch_files, result.batch_seconds_each = sizes, batch_seconds
        rates, peaks = [], []
        for files in sizes:
            if is_cuda:
                torch.cuda.reset_peak_memory_stats(dev)
            rates.append(_folder_batch(dense, tokenizer, files, batch_seconds, result, report))
            if is_cuda:
                peaks.append(round(torch.cuda.max_memory_allocated(dev) / 1024**3, 1))
        result.batch_rtfx, result.batch_peak_gpu_gb = tuple(rates), tuple(peaks)
        del dense

    if compare_transformers:
        result.transformers = compare_with_transformers(config, tensors, dev, result, report)
    result.peak_host_gb = round(_peak_host_gb(), 2)
    return result


def _folder_batch(
    dense: VoxtralModel,
    tokenizer: TekkenTokenizer,
    files: int,
    seconds: float,
    result: BenchResult,
    report: Callable[[str], None],
) -> float:
    """`files` x `seconds` of noise side by side through one `BatchDecoder` on the dense model:
    audio seconds per second after a warm-up on the first 2 s of each; 0.0 if out of memory."""
    try:
        rate, encoder_reason = _timed_folder(dense, tokenizer, files, seconds)
    except (DeviceError, torch.OutOfMemoryError) as e:
        report(f"folder batch of {files} x {seconds:.0f} s: did not fit ({str(e).splitlines()[0]})")
        rate = 0.0
    else:
        result.notes.append(f"folder batch of {files}: encoder cache {encoder_reason}")
        report(f"folder batch of {files} x {seconds:.0f} s: {rate}x real time")
    gc.collect()  # the decoder's graphs and caches, before the next size
    if dense.device.type == "cuda":
        torch.cuda.empty_cache()
    return rate


def _timed_folder(
    dense: VoxtralModel, tokenizer: TekkenTokenizer, files: int, seconds: float
) -> tuple[float, str]:
    dev = dense.device
    decoder = BatchDecoder(
        dense, tokenizer, StreamConfig(480), batch=files, max_seconds=seconds, cuda_graphs=dev.type == "cuda"
    )
    audios = [noise(seconds, seed=10 + i) for i in range(files)]
    decoder.transcribe([a[: SAMPLE_RATE * 2] for a in audios])  # warm-up
    _sync(dev)
    t0 = time.perf_counter()
    decoder.transcribe(audios)
    _sync(dev)
    return _rate(files * seconds / (time.perf_counter() - t0)), decoder.encoder_reason


def compare_with_transformers(
    config: ModelConfig,
    tensors: dict[str, Any],
    device: torch.device,
    ours: BenchResult,
    report: Callable[[str], None],
) -> dict[str, float]:
    """The same audio through HF transformers' VoxtralRealtimeForConditionalGeneration (bf16, eager)."""
    try:
        import transformers  # noqa: F401
    except ImportError:
        report("transformers is not installed: `pip install transformers==5.23.0` for --compare transformers")
        return {}
    from voxtral_desktop.benchmark_hf import hf_generate_timing

    seconds = 20.0
    timing = hf_generate_timing(config, tensors, device, noise(seconds, seed=3))
    out = {"step_ms": round(timing["step_ms"], 3), "file_rtfx": round(seconds / timing["total_s"], 2)}
    if ours.step_ms:
        out["step_speedup"] = round(timing["step_ms"] / ours.step_ms["p50"], 1)
    if ours.file_rtfx:
        out["file_speedup"] = round(ours.file_rtfx / out["file_rtfx"], 1)
    report(f"transformers (bf16, eager, same GPU): {out}")
    return out


def write_json(result: BenchResult, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(asdict(result), indent=2) + "\n", encoding="utf-8")
    return path


def format_table(result: BenchResult) -> str:
    """The measurements as aligned rows; the parts that were skipped (a file length, batch or
    rows of 0) and GPU memory off a GPU are left out, not shown as zeros."""
    rows = [
        ("machine", result.machine),
        (
            "device / kernel / KV cache",
            f"{result.device} / {result.kernel} / {result.kv_cache}" + (" / PDL" if result.pdl else ""),
        ),
        ("PyTorch CPU threads", str(result.host_threads)),
        ("load (pack, fuse)", f"{result.load_s} s"),
        ("session start (silent prefix, CUDA graphs)", f"{result.graph_capture_s} s"),
        (f"streaming step ({result.steps} steps)",
         " ".join(f"{k} {v} ms" for k, v in result.step_ms.items() if k in ("p50", "p95", "p99"))),
        ("first token after the prompt's audio", f"{result.first_token_ms:.2f} ms"),
    ]  # fmt: skip
    if result.full_window_steps > 0:
        rows.insert(-1, (f"the same, decoder window full ({result.full_window_steps} steps)",
                         " ".join(f"{k} {v} ms" for k, v in result.step_full_window_ms.items()
                                  if k in ("p50", "p95", "p99"))))  # fmt: skip
    if result.file_seconds > 0:
        rows.append((f"one {result.file_seconds:.0f} s file, one stream", f"{result.file_rtfx}x real time"))
    if result.segment_batch > 0:
        rows.append((f"the same file, segments <= {result.segment_seconds:.0f} s x {result.segment_batch}",
                     f"{result.file_segmented_rtfx}x real time"))  # fmt: skip
    for i, (files, rate) in enumerate(zip(result.batch_files, result.batch_rtfx, strict=True)):
        peak = f" (peak GPU {result.batch_peak_gpu_gb[i]} GiB)" if result.batch_peak_gpu_gb else ""
        rows.append((f"folder batch {files} x {result.batch_seconds_each:.0f} s",
                     f"{rate}x real time{peak}" if rate > 0 else "out of memory"))  # fmt: skip
    if result.folder_batch > 0:
        rows.append((f"the folder through transcribe, segments x {result.folder_batch} rows",
                     f"{result.folder_segmented_rtfx}x real time"))  # fmt: skip
    if result.gpu_model_gb > 0:
        rows += [
            ("GPU held: Q4 model / + live session",
             f"{result.gpu_model_gb} GiB / {result.gpu_session_gb} GiB"),
            ("peak GPU: live session / with file paths",
             f"{result.peak_gpu_gb} GiB / {result.peak_gpu_file_gb} GiB"),
        ]  # fmt: skip
    rows.append(("peak host memory", f"{result.peak_host_gb} GB"))
    for key, value in result.transformers.items():
        rows.append((f"transformers {key}", str(value)))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
