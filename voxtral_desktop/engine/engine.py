"""A loaded model, its tokenizer and its device: what the CLI and the app's worker thread hold.

Loading is the only slow, failure-prone step; everything that can go wrong with a user's files
surfaces here as a one-line `VoxtralError`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from voxtral_desktop.config import DEFAULT_DELAY_MS, StreamConfig
from voxtral_desktop.device import DeviceChoice, resolve_device
from voxtral_desktop.engine.batch import BatchDecoder, release_memory
from voxtral_desktop.engine.events import ModelInfo
from voxtral_desktop.engine.session import StreamingSession
from voxtral_desktop.engine.tokenizer import TekkenTokenizer
from voxtral_desktop.errors import DeviceError, TokenizerError
from voxtral_desktop.kernels.select import choose_kv_int8, choose_q4_backend, kv_cache_name
from voxtral_desktop.model.build import build_model
from voxtral_desktop.model.voxtral import VoxtralModel
from voxtral_desktop.weights.checkpoint import open_checkpoint
from voxtral_desktop.weights.names import expected_tensors

log = logging.getLogger(__name__)

# The 13 languages Voxtral Mini 4B Realtime was trained on; it detects the language itself.
LANGUAGES = ("ar", "de", "en", "es", "fr", "hi", "it", "ja", "ko", "nl", "pt", "ru", "zh")


@dataclass
class Engine:
    model: VoxtralModel
    tokenizer: TekkenTokenizer
    device: DeviceChoice
    info: ModelInfo

    @classmethod
    def load(
        cls,
        model_path: str | Path,
        *,
        tokenizer_path: str | Path | None = None,
        device: str = "auto",
        kernel: str = "auto",
        kv_cache: str = "auto",
    ) -> Engine:
        """`kernel` picks the Q4_0 matmul, `kv_cache` how the KV caches store keys and values
        (see kernels/select.py); `reference` and `full` are the exact ones."""
        started = time.perf_counter()
        choice = resolve_device(device)
        backend = choose_q4_backend(choice.device, kernel)
        kv_int8 = choose_kv_int8(choice.device, choice.dtype, kv_cache)
        checkpoint = open_checkpoint(
            Path(model_path), tokenizer_path=None if tokenizer_path is None else Path(tokenizer_path)
        )
        if checkpoint.tekken_json is None:  # only checkpoints built in memory lack one
            raise TokenizerError(f"{model_path} has no tokenizer: pass --tokenizer tekken.json")
        tokenizer = TekkenTokenizer.from_bytes(checkpoint.tekken_json)
        if tokenizer.vocab_size != checkpoint.config.decoder.vocab_size:
            log.warning(
                "tokenizer has %d ids, the model %d; ids past the tokenizer decode to nothing",
                tokenizer.vocab_size,
                checkpoint.config.decoder.vocab_size,
            )
        try:
            model = build_model(
                checkpoint.config,
                checkpoint.tensors,
                device=choice.device,
                dtype=choice.dtype,
                q4_backend=backend,
                fuse=True,
            )
        except torch.OutOfMemoryError:
            raise DeviceError(
                f"not enough memory on {choice.device} for this model; try --device cpu"
            ) from None
        model.kv_int8 = kv_int8
        n_params = sum(math.prod(spec.shape) for spec in expected_tensors(checkpoint.config))
        kernel_name = "dense" if backend is None else backend.name
        kv_name = kv_cache_name(kv_int8, choice.dtype)
        info = ModelInfo(
            source=checkpoint.description,
            device=f"{choice.describe()}; Q4 kernel: {kernel_name}; KV cache: {kv_name}",
            n_parameters=n_params,
            languages=LANGUAGES,
        )
        log.info("loaded %s on %s in %.2f s", info.source, info.device, time.perf_counter() - started)
        return cls(model=model, tokenizer=tokenizer, device=choice, info=info)

    @property
    def default_delay_ms(self) -> int:
        """The tokenizer's own transcription delay if it names one, else 480 ms."""
        return self.tokenizer.audio_delay_ms or DEFAULT_DELAY_MS

    def session(self, config: StreamConfig | None = None) -> StreamingSession:
        """A new stream; on CUDA every step after the prompt replays a captured graph."""
        return StreamingSession(
            self.model,
            self.tokenizer,
            config or StreamConfig(self.default_delay_ms),
            cuda_graphs=self.device.device.type == "cuda",
        )

    def batch_decoder(
        self, config: StreamConfig, *, batch: int, max_seconds: float, dense: bool | None = None
    ) -> BatchDecoder:
        """Preallocated state for `batch` streams of up to `max_seconds` (file batches, long files
        cut into segments); build it once and reuse it. On CUDA its steps replay captured graphs.
        `dense` None: dense weight copies where `choose_dense` says they pay off and fit (logged).
        Out of memory for the rows: DeviceError, with the memory of the attempt given back."""
        cuda = self.device.device.type == "cuda"
        try:
            decoder = BatchDecoder(
                self.model,
                self.tokenizer,
                config,
                batch=batch,
                max_seconds=max_seconds,
                cuda_graphs=cuda,
                dense=dense,
            )
        except torch.OutOfMemoryError:
            decoder = None
        if decoder is None:
            release_memory(self.device.device)
            raise DeviceError(
                f"not enough memory on {self.device.device} for {batch} streams of {max_seconds:g} s; "
                "try shorter segments (--segment-seconds) or --device cpu"
            )
        log.info(
            "file batch of %d rows: %s; encoder cache %s", batch, decoder.dense_reason, decoder.encoder_reason
        )
        return decoder
