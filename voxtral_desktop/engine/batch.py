"""Many files at once: B streams decoded in lockstep, one batched matmul per position.

At batch 1 the decoder is bound by reading its weights; reading them once for B streams makes a
folder of files B times cheaper per second of audio. Every stream runs the same positions at the
same time (they share the prompt and the left pad), so the batch needs no per-row positions: a
stream that ends earlier just idles in its row until the longest one ends. Sorting files by
length keeps that waste small. Each row computes exactly what a single `StreamingSession` would
with the same cache formats; tests check the tokens are equal. (On CUDA the encoder phase of many
streams keeps its cache in bf16 where it fits, where a session's is int8: `choose_encoder_int8`.)

Two phases: the encoder first runs over every file in large chunks, a few files at a time (it
does not depend on the text, and its 750-frame KV cache is 122-263 MB per stream at full size,
so it is kept for `encoder_batch` streams only), storing one audio vector per position
(B x positions x 6 KB in bf16); then the decoder runs all B streams in lockstep. The first
`SILENT_POSITIONS` of every stream hear the same left pad: they are computed once, for one
stream, and copied into every row.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import numpy as np
import torch

from voxtral_desktop.audio.mel import log_mel, log_mel_on
from voxtral_desktop.config import (
    EOS_ID,
    HOP_LENGTH,
    MEL_FRAMES_PER_TOKEN,
    N_FFT,
    N_LEFT_PAD_TOKENS,
    SAMPLE_RATE,
    SAMPLES_PER_TOKEN,
    StreamConfig,
)
from voxtral_desktop.engine.events import TimedToken
from voxtral_desktop.engine.tokenizer import StreamingDetokenizer, TekkenTokenizer
from voxtral_desktop.engine.transcribe import Transcript
from voxtral_desktop.errors import DeviceError
from voxtral_desktop.kernels.linear import DenseCopy, dense_nbytes, dense_weights
from voxtral_desktop.kernels.select import kv_cache_name
from voxtral_desktop.model.decoder import DecoderState
from voxtral_desktop.model.encoder import EncoderState
from voxtral_desktop.model.graph_step import GraphStep
from voxtral_desktop.model.voxtral import VoxtralModel

log = logging.getLogger(__name__)

ENCODER_CHUNK_TOKENS = 64
DECODE_RUN = 64  # positions replayed between two reads of the tokens


DENSE_MIN_ROWS = 32  # from here on a folder's rows run on dense weights when the GPU holds them
# Left free beside the dense copy, once the decoder's caches are allocated, for the work of a
# call (encoder chunks of 64 streams, the graphs' activations, logits): well under 1 GiB at 256
# rows on the H100 (bench/RESULTS.md, session 7); the rest is margin.
DENSE_SPARE_BYTES = 2 << 30


def _free_bytes(device: torch.device) -> int:
    """Free GPU memory, counting what PyTorch's allocator holds but does not use."""
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def release_memory(device: torch.device) -> None:
    """After a failed allocation (outside its except block, whose traceback held the tensors):
    collect them and hand the allocator's cached blocks back, so the next try sees the memory."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def choose_dense(model: VoxtralModel, batch: int, reserve: int = 0) -> tuple[bool, str]:
    """Whether a `batch`-row decoder whose caches are already allocated should also hold dense
    weights, and why: on CUDA from DENSE_MIN_ROWS rows on, when the copy fits with
    DENSE_SPARE_BYTES to spare, besides `reserve` bytes still to be allocated (the Q4 kernels are
    read-bound at a few rows; at many, cuBLAS on bf16 wins: bench/RESULTS.md)."""
    if model.device.type != "cuda":
        return False, "Q4 weights (dense copies pay off on CUDA only)"
    if batch < DENSE_MIN_ROWS:
        return False, f"Q4 weights ({batch} rows; dense from {DENSE_MIN_ROWS})"
    need, free = dense_nbytes(model, model.dtype), _free_bytes(model.device) - reserve
    if free < need + DENSE_SPARE_BYTES:
        return False, (
            f"Q4 weights (a dense copy needs {need / 2**30:.1f} GiB + {DENSE_SPARE_BYTES >> 30} GiB spare, "
            f"{free / 2**30:.1f} GiB free)"
        )
    return True, f"dense {str(model.dtype).removeprefix('torch.')} weights ({need / 2**30:.1f} GiB copy)"


# From this many streams per encoder group on, the encoder phase's cache is in the compute dtype
# where it fits (`choose_encoder_int8`); fewer keep the model's int8.
ENCODER_FULL_MIN_STREAMS = 32


def choose_encoder_int8(model: VoxtralModel, streams: int, full_bytes: int) -> tuple[bool, str]:
    """Whether a file batch's encoder phase, `streams` at a time, keeps its KV cache in int8 like
    the model's caches or in the compute dtype (`full_bytes`, about twice the int8 size), and why.
    A chunk's 128 frames read every key 128 times, so int8 saves little traffic there and costs a
    conversion. On the H200, at a folder's 64 streams x 128 frames, the chunk attention took 320 us
    a call on a bf16 cache against 420 us on int8, and the folder's encoder phase 3.58 s against
    3.74 s (bench/RESULTS.md, eleventh session). At 8 streams (a long file's segments) the gain
    was within the noise, and the int8 kernels are the ones a live session has already compiled.
    So: the compute dtype on CUDA from ENCODER_FULL_MIN_STREAMS streams on, when it fits beside
    the rest of the batch with DENSE_SPARE_BYTES to spare."""
    name = kv_cache_name(False, model.dtype)
    if not model.kv_int8:
        return False, f"{name} (as the model's caches)"
    if model.device.type != "cuda":
        return True, "int8 (as the model's caches)"
    if streams < ENCODER_FULL_MIN_STREAMS:
        return True, f"int8 ({streams} streams at a time; {name} from {ENCODER_FULL_MIN_STREAMS})"
    free = _free_bytes(model.device)
    if free < full_bytes + DENSE_SPARE_BYTES:
        return True, (
            f"int8 (a {name} cache needs {full_bytes / 2**30:.1f} GiB + {DENSE_SPARE_BYTES >> 30} GiB spare, "
            f"{free / 2**30:.1f} GiB free)"
        )
    return False, f"{name} ({full_bytes / 2**30:.1f} GiB; faster than int8 at chunk shapes)"


# Leading positions whose mel frames see only the left pad (the centred frames 0..254 end before
# its last sample): every stream computes the same encoder output, audio vectors and decoder keys
# for them, so a batch computes them once, for one stream, and copies them into every row.
SILENT_POSITIONS = (
    (N_LEFT_PAD_TOKENS * SAMPLES_PER_TOKEN - N_FFT // 2) // HOP_LENGTH + 1
) // MEL_FRAMES_PER_TOKEN


def padded_audio(audio: np.ndarray, config: StreamConfig) -> np.ndarray:
    """The offline padding: 32 tokens of silence left; right to a token boundary plus the pad."""
    left = np.zeros(N_LEFT_PAD_TOKENS * SAMPLES_PER_TOKEN, np.float32)
    right = np.zeros(
        -len(audio) % SAMPLES_PER_TOKEN + config.n_right_pad_tokens * SAMPLES_PER_TOKEN, np.float32
    )
    return np.concatenate([left, np.asarray(audio, np.float32), right])


@dataclass
class _Row:
    """One signal's decoding in a `BatchDecoder` call."""

    detok: StreamingDetokenizer
    last: int  # the position of its last token (the reference never runs the one after)
    steps: int  # its start in its file: 80 ms steps, added to its tokens' steps
    seconds: float  # and seconds, added to their times
    tokens: list[TimedToken] = field(default_factory=list)


class BatchDecoder:
    """Preallocated state for up to `batch` streams; reuse it for every batch of files."""

    def __init__(
        self,
        model: VoxtralModel,
        tokenizer: TekkenTokenizer,
        config: StreamConfig,
        *,
        batch: int,
        max_seconds: float = 600.0,
        cuda_graphs: bool = False,
        encoder_batch: int | None = None,
        encoder_chunk: int | None = None,
        dense: bool | None = False,
        encoder_int8: bool | None = None,
    ) -> None:
        """Files up to `max_seconds` long; that bounds the decoder cache (B x positions x 106 KB,
        half that with int8 KV). The encoder phase runs `encoder_batch` streams at a time in
        chunks of `encoder_chunk` positions (its cache holds the 750-frame window plus a chunk,
        ~122 MB a stream with int8 KV, 263 MB in bf16). By default 64 streams with an int8 cache
        (CUDA), else 8; chunks of 64 positions (2,048 frames a matmul for 8 streams), 32 from 32
        streams on, where the chunk's keys are then mostly inside the window. On the H100, 64
        streams x 32 positions were the fastest (bench/RESULTS.md).

        `dense`: the decoder holds dense copies of the model's Q4 matrices (`DenseCopy`, 2 bytes
        a weight in bf16) and runs on them: with many rows cuBLAS beats the Q4 kernels (on the
        H100, a folder's segments ran 2-3x faster from 32 rows on: bench/RESULTS.md, session 7);
        the model's other users keep the Q4 kernels. None: `choose_dense` decides once the caches
        are allocated, and out of memory for the copy the Q4 weights stay; `dense_reason` says
        which and why.

        `encoder_int8`: the encoder phase's KV cache in int8 (True) or in the compute dtype
        (False); None: `choose_encoder_int8` decides once the decoder (and its dense copy) has
        its memory; `encoder_reason` says which and why. Each row computes exactly what a
        `StreamingSession` would when the two caches agree (a session's are the model's)."""
        self.model, self.tokenizer, self.config, self.batch = model, tokenizer, config, batch
        self._dense: DenseCopy | None = None
        # the silent positions' (audio vectors [1, P, dim], encoder state) and decoder cache, made
        # on first use under the weights this decoder runs (`_silent_encoder`, `_silent_decoder`)
        self._silent_encoding: tuple[torch.Tensor, dict[str, object]] | None = None
        self._silent_cache: dict[str, object] | None = None
        self._allocate(model, config, batch, max_seconds, encoder_batch, encoder_chunk)
        self.dense_reason = "dense weights (asked for)" if dense else "Q4 weights"
        if dense is None:
            dense, self.dense_reason = choose_dense(model, batch, reserve=self._encoder_bytes(model.kv_int8))
        if dense:
            try:
                self._dense = DenseCopy(model, model.dtype)
            except torch.OutOfMemoryError:
                self.dense_reason = "Q4 weights (out of memory for a dense copy)"
            if self._dense is None:
                release_memory(model.device)
        # the encoder phase's cache last: the dense copy pays more than a faster chunk attention
        if encoder_int8 is None:
            self.encoder_int8, self.encoder_reason = choose_encoder_int8(
                model, self.encoder_batch, self._encoder_bytes(False)
            )
        else:
            self.encoder_int8 = encoder_int8
            self.encoder_reason = f"{kv_cache_name(encoder_int8, model.dtype)} (asked for)"
        self.encoder = self._encoder_state(self.encoder_batch)
        with self._weights():  # the graphs read the weights in use at capture
            self.graph = GraphStep(model, None, self.decoder) if cuda_graphs else None

    def _weights(self) -> AbstractContextManager[None]:
        return self._dense.applied() if self._dense is not None else contextlib.nullcontext()

    @property
    def dense(self) -> bool:
        return self._dense is not None

    def _allocate(
        self,
        model: VoxtralModel,
        config: StreamConfig,
        batch: int,
        max_seconds: float,
        encoder_batch: int | None,
        encoder_chunk: int | None,
    ) -> None:
        if encoder_batch is None:
            encoder_batch = 64 if model.kv_int8 and model.device.type == "cuda" else 8
        self.encoder_batch = min(batch, encoder_batch)
        if encoder_chunk is None:
            encoder_chunk = ENCODER_CHUNK_TOKENS if self.encoder_batch < 32 else ENCODER_CHUNK_TOKENS // 2
        self.encoder_chunk = encoder_chunk
        self.max_positions = len(
            padded_audio(np.zeros(int(max_seconds * SAMPLE_RATE), np.float32), config)
        ) // (SAMPLES_PER_TOKEN)
        device, dtype = model.device, model.dtype
        mcfg = model.config
        with torch.no_grad():
            ada = model.decoder.ada_scales(config.n_delay_tokens, device, dtype)
        # the log-mel of digital silence: one constant column [n_mels, 1]
        silence = log_mel(np.zeros(SAMPLES_PER_TOKEN, np.float32))[:, :1]
        self._silent_column = torch.from_numpy(silence).to(device, dtype)
        self.decoder = DecoderState.allocate(
            mcfg.decoder,
            ada,
            batch=batch,
            max_chunk=config.n_prompt_tokens,
            device=device,
            dtype=dtype,
            max_positions=self.max_positions,
            kv_int8=model.kv_int8,
        )
        self._prompt = torch.tensor([config.prompt_ids()] * batch, device=device)

    @torch.no_grad()
    def transcribe(
        self, audios: Sequence[np.ndarray], starts: Sequence[int] | None = None
    ) -> list[Transcript]:
        """Up to `batch` mono float32 16 kHz signals -> their transcripts, in the given order.
        `starts`: where each signal begins in its file, in samples. Its tokens' steps and times
        are then on the file's timeline: made so once, not made and then moved (a folder of 256
        one-minute files makes 200,000 tokens).
        Out of GPU memory mid-way: DeviceError (one line for the user, not a traceback)."""
        if starts is not None and len(starts) != len(audios):
            raise ValueError(f"{len(starts)} starts for {len(audios)} signals")
        try:
            with self._weights():
                return self._transcribe(audios, [0] * len(audios) if starts is None else starts)
        except torch.OutOfMemoryError:
            pass  # handled below, outside the except block, so the failed call's tensors can go
        release_memory(self.model.device)
        raise DeviceError(
            f"ran out of memory on {self.model.device} decoding {len(audios)} streams side by side; "
            "try shorter segments (--segment-seconds), fewer files at once, or --device cpu"
        )

    def _transcribe(self, audios: Sequence[np.ndarray], starts: Sequence[int]) -> list[Transcript]:
        if not 0 < len(audios) <= self.batch:
            raise ValueError(f"between 1 and {self.batch} signals per call, got {len(audios)}")
        cfg, model = self.config, self.model
        # On the model's device: a minute's CPU STFT costs more than its share of the model here.
        mels = [log_mel_on(padded_audio(a, cfg), model.device).to(model.dtype) for a in audios]
        lengths = [m.shape[1] // MEL_FRAMES_PER_TOKEN for m in mels]  # P_i positions
        n_positions = max(lengths)
        if n_positions > self.max_positions:
            raise ValueError(f"a signal is longer than this batch decoder's {self.max_positions} positions")
        # Positions 0 .. n-2 are decoded (the reference never runs the last one).
        audio = self._encode(mels, n_positions - 1)  # [B, n - 1, dim]
        self.decoder.cache.restore(self._silent_decoder())  # positions 0 .. P-1 of every row

        n_prompt, P = cfg.n_prompt_tokens, SILENT_POSITIONS
        rows = [_Row(StreamingDetokenizer(self.tokenizer), n - 2, s // SAMPLES_PER_TOKEN, s / SAMPLE_RATE)
                for n, s in zip(lengths, starts, strict=True)]  # fmt: skip
        open_rows = set(range(len(audios)))
        logits = model.decode(self._prompt[:, P:], audio[:, P:n_prompt], self.decoder)
        next_ids = logits.argmax(-1)
        self._collect(next_ids.tolist(), n_prompt - 1, rows, open_rows)
        for position, column in self._columns(audio, next_ids, n_prompt) if open_rows else ():
            self._collect(column, position, rows, open_rows)
            if not open_rows:
                break  # stops the generator: no further run is queued

        out = []
        for row, audio_in in zip(rows, audios, strict=True):
            tail = row.detok.flush()
            row_tokens = row.tokens
            if tail and row_tokens:
                last = row_tokens[-1]
                row_tokens[-1] = TimedToken(last.id, last.step, last.time_s, last.text + tail)
            out.append(
                Transcript(
                    text="".join(t.text for t in row_tokens),
                    tokens=tuple(row_tokens),
                    delay_ms=cfg.delay_ms,
                    duration_s=len(audio_in) / SAMPLE_RATE,
                )
            )
        return out

    def _columns(
        self, audio: torch.Tensor, next_ids: torch.Tensor, start: int
    ) -> Iterator[tuple[int, list[int]]]:
        """(position, the B tokens it gave) for every position from `start` on, fed `next_ids`.

        With CUDA graphs, positions run in runs of DECODE_RUN replays whose tokens are copied to
        pinned host memory; a run's tokens are handed out only after the next run is queued, so
        the GPU keeps working while the host detokenizes."""
        model, n = self.model, audio.shape[1]
        if self.graph is None:
            for position in range(start, n):
                next_ids = model.decode(
                    next_ids[:, None], audio[:, position : position + 1], self.decoder
                ).argmax(-1)
                yield position, next_ids.tolist()
            return
        pending: tuple[int, torch.Tensor, torch.cuda.Event] | None = None
        token: torch.Tensor | None = next_ids
        for first in range(start, n, DECODE_RUN):
            ids = self.graph.run_many(audio[:, first : first + DECODE_RUN], token)  # [B, count]
            token = None  # later runs continue from the token fed back on the device
            host = torch.empty(ids.shape, dtype=ids.dtype, pin_memory=True)
            host.copy_(ids, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
            if pending is not None:
                yield from self._ready(*pending)
            pending = (first, host, done)
        if pending is not None:
            yield from self._ready(*pending)

    @staticmethod
    def _ready(first: int, host: torch.Tensor, done: torch.cuda.Event) -> Iterator[tuple[int, list[int]]]:
        done.synchronize()
        for offset, column in enumerate(host.t().tolist()):
            yield first + offset, column

    def _encode(self, mels: list[torch.Tensor], n_positions: int) -> torch.Tensor:
        """The audio vectors of the first `n_positions` positions of every stream: [B, n, dim].
        Streams run through the encoder `encoder_batch` at a time, in chunks of positions."""
        model, device, dtype = self.model, self.model.device, self.model.dtype
        out = torch.empty(self.batch, n_positions, model.config.decoder.dim, device=device, dtype=dtype)
        # Thousands of frames per matmul: dense weights for this phase beat the Q4 kernels.
        with dense_weights(model.encoder, dtype), dense_weights(model.adapter, dtype):
            self._encode_groups(mels, n_positions, out)
        return out

    def _silence(self, rows: int, frames: int) -> torch.Tensor:
        """[rows, n_mels, frames] of the log-mel of digital silence."""
        return self._silent_column.expand(rows, -1, frames).contiguous()

    def _encoder_state(self, rows: int) -> EncoderState:
        mcfg = self.model.config
        return EncoderState.allocate(
            mcfg.encoder,
            batch=rows,
            max_chunk_frames=self.encoder_chunk * mcfg.downsample_factor,
            device=self.model.device,
            dtype=self.model.dtype,
            kv_int8=self.encoder_int8,
        )

    def _encoder_bytes(self, kv_int8: bool) -> int:
        """Bytes of the encoder phase's cache (`encoder_batch` streams) in int8 or the compute dtype."""
        mcfg = self.model.config
        return EncoderState.cache_bytes(
            mcfg.encoder,
            batch=self.encoder_batch,
            max_chunk_frames=self.encoder_chunk * mcfg.downsample_factor,
            dtype=self.model.dtype,
            kv_int8=kv_int8,
        )

    def _embed(
        self, mel: torch.Tensor, state: EncoderState, start: int, n_positions: int
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """(first position, audio vectors [rows, count, dim]) of positions start .. n_positions-1
        of `mel`, in chunks of `encoder_chunk` positions through `state`."""
        for first in range(start, n_positions, self.encoder_chunk):
            count = min(self.encoder_chunk, n_positions - first)
            chunk = mel[:, :, first * MEL_FRAMES_PER_TOKEN : (first + count) * MEL_FRAMES_PER_TOKEN]
            yield first, self.model.embed_audio(chunk, state)

    def _silent_encoder(self) -> tuple[torch.Tensor, dict[str, object]]:
        """The silent positions' audio vectors [1, P, dim] and the encoder state after them."""
        if self._silent_encoding is None:
            state = self._encoder_state(1)
            mel = self._silence(1, SILENT_POSITIONS * MEL_FRAMES_PER_TOKEN)
            audio = torch.cat([v for _, v in self._embed(mel, state, 0, SILENT_POSITIONS)], dim=1)
            self._silent_encoding = audio, state.snapshot()
        return self._silent_encoding

    def _silent_decoder(self) -> dict[str, object]:
        """The decoder cache after the silent positions (run under the decoder's weights)."""
        if self._silent_cache is None:
            audio, _ = self._silent_encoder()
            state = DecoderState.allocate(
                self.model.config.decoder,
                self.decoder.ada_scales,
                batch=1,
                max_chunk=SILENT_POSITIONS,
                device=self.model.device,
                dtype=self.model.dtype,
                max_positions=SILENT_POSITIONS,
                kv_int8=self.model.kv_int8,
            )
            self.model.decode(self._prompt[:1, :SILENT_POSITIONS], audio, state)
            self._silent_cache = state.cache.snapshot()
        return self._silent_cache

    def _encode_groups(self, mels: list[torch.Tensor], n_positions: int, out: torch.Tensor) -> None:
        rows_per_group = self.encoder_batch
        silent_audio, silent_state = self._silent_encoder()
        out[:, :SILENT_POSITIONS] = silent_audio
        for first in range(0, len(mels), rows_per_group):
            group = mels[first : first + rows_per_group]
            # rows past a stream's end hear silence
            mel = self._silence(rows_per_group, n_positions * MEL_FRAMES_PER_TOKEN)
            for row, m in enumerate(group):
                width = min(m.shape[1], mel.shape[2])
                mel[row, :, :width] = m[:, :width]
            self.encoder.restore(silent_state)  # positions 0 .. P-1 in every row
            for start, vectors in self._embed(mel, self.encoder, SILENT_POSITIONS, n_positions):
                out[first : first + len(group), start : start + vectors.shape[1]] = vectors[: len(group)]

    def _collect(
        self,
        values: list[int],
        step: int,
        rows: list[_Row],
        open_rows: set[int],
    ) -> None:
        time_s = max(0.0, (step + 1 - N_LEFT_PAD_TOKENS) * SAMPLES_PER_TOKEN / SAMPLE_RATE)
        for index in sorted(open_rows):
            token, row = values[index], rows[index]
            if token == EOS_ID and self.config.stop_at_eos:
                open_rows.discard(index)
                continue
            text = row.detok.push(token) if token < self.tokenizer.vocab_size else ""
            row.tokens.append(TimedToken(token, step + row.steps, time_s + row.seconds, text))
            if step >= row.last:  # the reference's last token for this stream
                open_rows.discard(index)
