"""The full-size model with random Q4_0 weights that the device-only bench scripts share.

Built the way `voxtral-desktop bench` builds its own (`benchmark.random_q4_tensors`, nothing
downloaded), with a tekken tokenizer of 2,000 synthetic tokens for the session's detokenizer.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from voxtral_desktop.benchmark import random_q4_tensors
from voxtral_desktop.config import SAMPLE_RATE, ModelConfig, StreamConfig
from voxtral_desktop.device import host_threads_for
from voxtral_desktop.engine.batch import BatchDecoder
from voxtral_desktop.engine.session import StreamingSession
from voxtral_desktop.engine.tokenizer import TekkenTokenizer
from voxtral_desktop.engine.transcribe import Transcript
from voxtral_desktop.kernels.mma_q4 import CudaMmaQ4Backend
from voxtral_desktop.kernels.select import choose_kv_int8
from voxtral_desktop.model.build import build_model
from voxtral_desktop.model.voxtral import VoxtralModel
from voxtral_desktop.synthetic.tekken import build_tekken_json


def on_the_gpu() -> tuple[VoxtralModel, TekkenTokenizer]:
    """What the device scripts start with: PyTorch's CPU threads as the app sets them beside a
    GPU, the GPU's name printed, and `full_size_model()`."""
    torch.set_num_threads(host_threads_for(torch.device("cuda")))
    print(torch.cuda.get_device_name(), flush=True)
    return full_size_model()


def full_size_model(*, dense: bool = False) -> tuple[VoxtralModel, TekkenTokenizer]:
    """(model, tokenizer) on CUDA in bf16: the mma Q4 kernel, or dense bf16 weights (`dense`, as
    the bench's folder batch runs); fused projections either way; the app's KV cache kind."""
    config = ModelConfig()
    backend = None if dense else CudaMmaQ4Backend()
    model = build_model(
        config,
        random_q4_tensors(config),
        device=torch.device("cuda"),
        dtype=torch.bfloat16,
        q4_backend=backend,
        fuse=True,
    )
    # the KV caches the app chooses on this GPU (int8 in bf16 on CUDA), as `voxtral-desktop bench`
    # sets them; until the twenty-second session these scripts ran bf16 caches
    model.kv_int8 = choose_kv_int8(torch.device("cuda"), torch.bfloat16)
    return model, TekkenTokenizer.from_dict(build_tekken_json(2000))


def fed_steps(
    model: VoxtralModel, tok: TekkenTokenizer, chunks: list[np.ndarray], steps: int
) -> tuple[StreamingSession, list[float]]:
    """A new live session (CUDA graphs) fed 100 chunks of 80 ms to warm up, then `steps` more
    back to back: the session and each of those `feed` calls' seconds."""
    session = StreamingSession(model, tok, StreamConfig(480), cuda_graphs=True)
    for c in chunks[:100]:
        session.feed(c)
    torch.cuda.synchronize()
    times = []
    for c in chunks[100 : 100 + steps]:
        t0 = time.perf_counter()
        session.feed(c)
        times.append(time.perf_counter() - t0)
    return session, times


def timed_batch_calls(
    model: VoxtralModel,
    tok: TekkenTokenizer,
    audios: Sequence[np.ndarray],
    rounds: int,
    *,
    on_decoder: Callable[[BatchDecoder], None] | None = None,
    **options: object,
) -> tuple[list[float], list[list[int]]]:
    """The bench's folder batch: a new `BatchDecoder` with a row for each of `audios` (CUDA graphs,
    `options` passed on), its kernels compiled on the first 2 s of every file, then `rounds`
    timed calls over the whole files. `on_decoder` sees the decoder before the timed calls.
    Returns each call's seconds and the last call's token ids, file by file."""
    rows = BatchDecoder(
        model, tok, StreamConfig(480), batch=len(audios),
        max_seconds=max(len(a) for a in audios) / SAMPLE_RATE, cuda_graphs=True, **options,  # type: ignore[arg-type]
    )  # fmt: skip
    rows.transcribe([a[: 2 * SAMPLE_RATE] for a in audios])  # compiles
    if on_decoder is not None:
        on_decoder(rows)
    walls: list[float] = []
    got: list[Transcript] = []
    for _ in range(rounds):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        got = rows.transcribe(audios)
        torch.cuda.synchronize()
        walls.append(time.perf_counter() - t0)
    return walls, [[t.id for t in g.tokens] for g in got]


def add_folder_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a script's `folder_arms` part: --folder to run it, --rounds timed calls an
    arm, and the folder, --files x --seconds (the bench's 256 x 60 s by default)."""
    parser.add_argument("--folder", action="store_true")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--files", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=60.0)


def folder_arms(
    arms: Sequence[tuple[str, Callable[[], None]]], files: int, seconds: float, rounds: int
) -> None:
    """The bench's folder batch (`files` x `seconds` of noise, dense bf16 model, int8 decoder
    caches) once for each arm, in order, after `setup()` switches to it: each call's wall time and
    rate, and in how many files the tokens agree with the first arm's."""
    from voxtral_desktop.benchmark import noise

    model, tok = full_size_model(dense=True)
    model.kv_int8 = True
    audios = [noise(seconds, seed=10 + i) for i in range(files)]
    first = None
    for label, setup in arms:
        setup()
        walls, ids = timed_batch_calls(model, tok, audios, rounds)
        first = first or ids
        same = sum(a == b for a, b in zip(first, ids, strict=True))
        rates = ", ".join(f"{w:.2f} s ({files * seconds / w:.1f}x)" for w in walls)
        print(f"folder {files} x {seconds:.0f} s, {label}: {rates}; "
              f"same tokens as the first arm in {same} of {files} files", flush=True)  # fmt: skip
        torch.cuda.empty_cache()
