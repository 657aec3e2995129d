"""The whole 80 ms streaming step (log-mel of 8 frames, encoder, adapter, decoder, argmax) as CUDA graphs.

Eager PyTorch launches ~1,000 small kernels per step; replaying a captured graph removes the
launch overhead, which is most of the step time on a fast GPU. Graphs need static shapes: the
fused attention kernel reads the cache fill from the device, so one graph over the whole ring
serves every position (for one stream two: the first 1,024 slots, then the whole ring, where its
keys are split among more programs); the
plain torch attention reads a fixed prefix of the cache instead, so without it there is one
graph per prefix length ("bucket"). The current position chooses the graph. All graphs share
the session's state tensors; the next token is fed back on the device.

The step's input and output cross to the host inside the graph: the front end reads the samples
of the position's 8 frames from a pinned host buffer and computes their log-mel on the GPU, and
the token is copied out to a pinned buffer. On the H200 the CPU's STFT of 80 ms and the separate
copies made a fed step ~0.5 ms longer than the GPU's work (bench/RESULTS.md, seventeenth
session).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from voxtral_desktop.config import MEL_FRAMES_PER_TOKEN
from voxtral_desktop.kernels import fused, tokens
from voxtral_desktop.model.decoder import DecoderState
from voxtral_desktop.model.encoder import EncoderState
from voxtral_desktop.model.voxtral import VoxtralModel

log = logging.getLogger(__name__)

FIRST_BUCKET = 256


def decoder_buckets(capacity: int) -> list[int]:
    buckets, size = [], FIRST_BUCKET
    while size < capacity:
        buckets.append(size)
        size *= 2
    return [*buckets, capacity]


def ring_buckets(capacity: int, batch: int) -> list[int]:
    """Graphs of the fused attention, which reads the whole ring up to its fill: for one stream,
    one for the first slots and one past them, where its step splits the keys among more
    programs (`fused.SPLIT_STEP_DEEP`: the split is fixed at capture); several streams split
    alike at any depth, so one graph."""
    first = fused.SPLIT_STEP_DEEP[0]
    return [first, capacity] if batch == 1 and capacity > first else [capacity]


class GraphStep:
    """Captured steps over one session's `EncoderState` and `DecoderState` (batch rows B).

    With `encoder=None` the graphs run only the decoder on a given audio vector (files, where
    the encoder runs ahead in large chunks). Two GraphSteps over the same decoder state can share
    `token`, the fed-back token buffer [B, 1], so either may run the next position.
    """

    def __init__(
        self,
        model: VoxtralModel,
        encoder: EncoderState | None,
        decoder: DecoderState,
        *,
        token: torch.Tensor | None = None,
        front_end: Callable[[torch.Tensor], torch.Tensor] | None = None,
        front_end_samples: int = 0,
    ) -> None:
        """Encoder graphs take `front_end`: the samples behind a position's 8 mel frames,
        float32 [B, front_end_samples] in pinned host memory -> their log-mel [B, n_mels, 8] on
        the device in any float dtype, read (or copied in) inside the graph (the session passes
        the audio package's `frames_to_log_mel`; the model package does not import it)."""
        if encoder is not None and (front_end is None or front_end_samples <= 0):
            raise ValueError("an encoder graph needs its front end and its input length")
        self.front_end = front_end
        self.model, self.encoder, self.decoder = model, encoder, decoder
        batch = decoder.cache.k.shape[1]
        device = model.device
        # Encoder graphs: the samples behind the position's 8 mel frames, written by the host
        # into pinned memory and read by the graph's front end; the token is copied out to pinned
        # memory too. (Decoder-only graphs keep none of these: their input is a device tensor.)
        span = front_end_samples if encoder is not None else 0
        self.samples_host = torch.zeros(batch, span, dtype=torch.float32, pin_memory=span > 0)
        self.token_host = torch.zeros(batch if span else 0, dtype=torch.long, pin_memory=span > 0)
        self._replayed = torch.cuda.Event()  # the last replay's copies have run once it completes
        self.audio = torch.zeros(batch, 1, model.config.decoder.dim, device=device, dtype=model.dtype)
        self.token = torch.zeros(batch, 1, dtype=torch.long, device=device) if token is None else token
        self.next_token = torch.zeros(batch, dtype=torch.long, device=device)
        dcfg = model.config.decoder
        probe = torch.empty(batch, dcfg.n_heads, 1, dcfg.head_dim, device=device, dtype=model.dtype)
        whole_ring = fused.attention_applies(probe)
        capacity = decoder.cache.capacity
        self.buckets = ring_buckets(capacity, batch) if whole_ring else decoder_buckets(capacity)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.pool = torch.cuda.graph_pool_handle()
        self._capture_all()

    def _body(self) -> None:
        if self.encoder is None:
            audio = self.audio
        else:
            assert self.front_end is not None
            mel = self.front_end(self.samples_host)  # [B, n_mels, 8] (in the model's dtype: no cast then)
            audio = self.model.embed_audio(mel.to(self.model.dtype), self.encoder)  # [B, 1, dim]
        logits = self.model.decode(self.token, audio, self.decoder)  # [B, V]
        if tokens.greedy_applies(logits) and self.token.is_contiguous():
            # two kernels write the token and its fed-back copy (kernels/tokens.py)
            tokens.greedy_into(logits, self.next_token, self.token.view(-1))
        else:
            nxt = logits.argmax(-1)
            self.next_token.copy_(nxt)
            self.token.copy_(nxt[:, None])
        if self.encoder is not None:
            self.token_host.copy_(self.next_token, non_blocking=True)

    def _capture_all(self) -> None:
        """Warm up, then capture one graph per bucket; the state is reset afterwards."""
        dec_cache = self.decoder.cache
        enc_cache = None if self.encoder is None else self.encoder.cache
        if enc_cache is not None:
            enc_cache.graph_view = enc_cache.capacity
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.no_grad():
            for bucket in self.buckets:
                dec_cache.graph_view = bucket
                for _ in range(2):  # warm-up runs execute (and scribble on the state: reset below)
                    self._body()
                graph = torch.cuda.CUDAGraph()
                saved = dec_cache.next_pos, None if enc_cache is None else enc_cache.next_pos
                with torch.cuda.graph(graph, pool=self.pool, stream=stream):
                    self._body()
                dec_cache.next_pos = saved[0]
                if enc_cache is not None and saved[1] is not None:
                    enc_cache.next_pos = saved[1]
                self.graphs[bucket] = graph
        torch.cuda.current_stream().wait_stream(stream)
        dec_cache.graph_view = None
        dec_cache.reset()
        if self.encoder is not None and enc_cache is not None:
            enc_cache.graph_view = None
            self.encoder.reset()
        log.info("captured %d CUDA graphs (decoder buckets %s)", len(self.graphs), self.buckets)

    def bucket_for(self, position: int) -> int:
        """The smallest prefix that holds every slot written up to `position` (inclusive)."""
        if position >= self.decoder.cache.capacity:
            return self.decoder.cache.capacity  # wrapped: the whole ring
        return next(b for b in self.buckets if position < b)

    def run_many(self, audio: torch.Tensor, token: torch.Tensor | None) -> torch.Tensor:
        """Decoder-only graphs over n positions in a row: audio [B, n, dim] -> tokens [B, n], read
        back once (not once per position)."""
        assert self.encoder is None
        n = audio.shape[1]
        out = torch.empty(audio.shape[0], n, dtype=torch.long, device=audio.device)
        for i in range(n):
            out[:, i].copy_(self.run(audio[:, i : i + 1], token if i == 0 else None))
        return out

    def run(self, inputs: torch.Tensor | np.ndarray, token: torch.Tensor | None) -> torch.Tensor:
        """One position. `inputs`: the samples of its 8 mel frames' windows [B,
        front_end_samples] (host float32), or with no encoder the audio vectors [B, 1, dim];
        `token` [B] to feed (None: the one fed back on the device) -> next token [B] on the
        device (`tokens_on_host()` has it on the host after an encoder graph)."""
        if self.encoder is None:
            assert isinstance(inputs, torch.Tensor)
            self.audio.copy_(inputs)
        else:
            samples = np.asarray(inputs, dtype=np.float32)
            if samples.shape != tuple(self.samples_host.shape):  # np.copyto would broadcast
                raise ValueError(f"samples {samples.shape}, the graph takes {tuple(self.samples_host.shape)}")
            self._replayed.synchronize()  # the last replay has read the samples
            np.copyto(self.samples_host.numpy(), samples)
        if token is not None:
            self.token.copy_(token.view(-1, 1))
        self.graphs[self.bucket_for(self.decoder.cache.next_pos)].replay()
        if self.encoder is not None:
            self._replayed.record()
            self.encoder.cache.advance_host(MEL_FRAMES_PER_TOKEN // 2)
        self.decoder.cache.advance_host(1)
        return self.next_token

    def tokens_on_host(self) -> list[int]:
        """The tokens of the last `run` of an encoder graph, once it has finished: read from the
        pinned buffer the graph copied them to (no separate copy, no pageable read-back)."""
        assert self.encoder is not None
        self._replayed.synchronize()
        return [int(t) for t in self.token_host.tolist()]
